"""The `okai` command: thin typer commands over the library; no logic of their own."""
