"""One-off setup scripts: run them as files, for example python setup/prefect_setup_blocks.py."""
