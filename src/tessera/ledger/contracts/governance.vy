# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Tessera governance
@notice snekmate's timelock controller: the only admin of the registry and
        owner of the market. Every admin action (registering a participant,
        stake rules, market parameters) is scheduled in public and runs only
        after `get_minimum_delay` seconds, and none of them changes a query
        that is already open (each query keeps the parameters it was
        submitted under).
"""

from snekmate.auth import access_control
from snekmate.governance import timelock_controller

initializes: access_control
initializes: timelock_controller[access_control := access_control]

exports: timelock_controller.__interface__


@deploy
@payable
def __init__(
    minimum_delay_: uint256,
    proposers_: DynArray[address, 255],
    executors_: DynArray[address, 255],
):
    access_control.__init__()
    timelock_controller.__init__(minimum_delay_, proposers_, executors_, empty(address))
