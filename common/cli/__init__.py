"""The command line: every flag, recipes, the namespace -> configs translation, the runner."""
