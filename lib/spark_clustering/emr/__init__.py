"""Amazon EMR support: cluster configurations, the launcher, and the build of what EMR runs.

Nothing here imports Spark; boto3 is imported only when a plan is executed against AWS.

- :mod:`.configurations`: EMR ``Configurations`` checks (shape, names, RAPIDS settings).
- :mod:`.config`: the launcher's configuration file.
- :mod:`.launcher`: plans (exact boto3 requests) and their execution.
- :mod:`.packaging`: the wheel and the ``--py-files`` zip.
"""

from __future__ import annotations
