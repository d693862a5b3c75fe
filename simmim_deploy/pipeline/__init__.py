"""End-to-end flows that chain the stages (train -> export -> serve) as one library call.

Sits beside ``cli`` at the top of the dependency graph: it may import every stage, never the CLI
or typer. ``simmim-deploy demo`` is a thin wrapper over
:func:`simmim_deploy.pipeline.demo.run_demo`.
"""
