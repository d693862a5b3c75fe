"""The ``simmim-deploy`` command line (Typer). One file per command; heavy imports inside them."""
