"""The Ali backend's reference schema: one model, rendered as Prisma-style SQL and as
``schema.prisma``, in Prisma naming (``"Message"."roomId"``) or snake_case (``messages.room_id``).
"""

from pgrunbook.reference.model import ALI_SCHEMA, Column, ForeignKey, Index, Schema, Table
from pgrunbook.reference.naming import Naming

__all__ = ["ALI_SCHEMA", "Column", "ForeignKey", "Index", "Naming", "Schema", "Table"]
