// A bare Hardhat network for the ledger tests: `npx hardhat node`.
// Vyper 0.4.3 targets the Prague EVM by default, so the hardfork must be Prague.
// A failing transaction is mined with status 0 (as on a real chain) instead of
// turning into a JSON-RPC error; the client recovers the reason by replaying it.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      hardfork: "prague",
      throwOnTransactionFailures: false,
      allowUnlimitedContractSize: false,
      accounts: { count: 20 },
    },
  },
};
