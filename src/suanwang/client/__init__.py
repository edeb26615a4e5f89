"""suanwang's Python SDK: typed sync and async clients for jobs, workflows, datasets, the grid, quotes and wallet.

    from suanwang.client import Client, ApiError
    with Client() as c:                       # SUANWANG_URL / SUANWANG_TOKEN, or a local `suanwang up`
        run = c.run({"name": "f", "steps": [{"name": "a", "job": {"command": ["true"]}}]})

A refused call raises :class:`ApiError` carrying the API's status, code and message.
"""

from suanwang.client._client import AsyncClient, Client, Dataset, Job, JobPage, WorkflowRun
from suanwang.client._errors import ApiError

__all__ = ["ApiError", "AsyncClient", "Client", "Dataset", "Job", "JobPage", "WorkflowRun"]
