# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Tessera credit token
@notice The ERC-20 in which queries are priced, escrowed and paid, and in
        which computing nodes stake. snekmate's audited ERC-20 (with EIP-2612
        permit); the deployer owns it and is its only minter.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: erc20.__interface__


@deploy
def __init__():
    ownable.__init__()
    erc20.__init__("Tessera Credit", "TSC", 18, "Tessera Credit", "1")
