"""``pgrunbook sql export``: the runbook's psql scripts, rendered for one database.

The ten scripts of the runbook's section 3 (``01_discovery.sql`` ...
``10_explain_analyze_templates.sql``) and a rollback script per change step, from the same
definitions the commands run: scripts 02-06 are the steps' ``export()``, the others are
rendered here from the SQL of ``discover``, ``monitor`` and the profile (one module per
script). See docs/sql-export.md.
"""

from pgrunbook.sqlexport.write import (
    ScriptExistsError,
    export_scripts,
    render_scripts,
    script_names,
)

__all__ = ["ScriptExistsError", "export_scripts", "render_scripts", "script_names"]
