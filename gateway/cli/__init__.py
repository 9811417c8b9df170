"""The `gateway` command (`main.py`): the group's classes in `group.py`, and a module for each of
its groups of subcommands."""
