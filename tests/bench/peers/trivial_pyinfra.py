# 14 trivial steps (`true`) per host: the orchestrator's own cost (tests/bench/peers.sh).
#   pyinfra INVENTORY.py tests/bench/peers/trivial_pyinfra.py -y --parallel 20
from pyinfra.operations import server

for i in range(1, 15):
    server.shell(name=f"step {i:02d}", commands=["true"])
