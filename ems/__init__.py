"""The user's tools: the `ems` command line and what only it runs.

`ems run` and the other subcommands (`ems.cli`), the site simulation (`ems sim`: simulate,
scenario, plot), Nordic prequalification (`ems prequal`), the simulated field devices
(`ems simulate-devices`) and `ems cluster status`. The controller itself lives in `runtime/`;
the tools use it, the runtime never imports a tool.
"""
