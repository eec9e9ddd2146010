"""Prisma integration (issue 5): reading schema.prisma, Prisma mode, prisma sync."""
