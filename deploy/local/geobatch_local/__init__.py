"""geobatch's local stack: the whole pipeline on one machine against the moto emulator.

Layout:
- ``processes``: child processes in their own process groups, stopped on exit or Ctrl-C.
- ``emulator``: starts the pinned moto server on a free loopback port.
- ``template``: resolves the CloudFormation intrinsics that the stack module needs.
- ``stack``: deploys ``deploy/cloudformation/geobatch.yaml`` and applies what moto ignores.
- ``placement``: the ECS agent stand-in's pure decisions (which task starts or stops where).
- ``agent``: the ECS agent stand-in (worker processes, task-protection endpoint).
- ``timeline``: samples queue, tasks and instances; writes the table and the SVG plot.
- ``demo``: ``make demo``.
- ``fault_test``: the end-to-end fault test run by ``make test``.
"""
