"""serl_gs tasks. Importing this package registers them with gymnasium under the `serl_gs/` namespace."""

from envs.registry import make_task, make_vector_env, register_all, task_names

register_all()

__all__ = ["make_task", "make_vector_env", "task_names"]
