"""serl_gs tasks. Importing this package registers them into `serl_gs.tasks` (and gymnasium) under the
`serl_gs/` namespace."""

from envs.registry import register_all, task_names
from serl_gs.tasks import make_task, make_vector_env

register_all()
import envs.experts  # noqa: E402, F401  (registers the scripted experts)

__all__ = ["make_task", "make_vector_env", "task_names"]
