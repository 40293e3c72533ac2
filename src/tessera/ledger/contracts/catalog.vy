# pragma version ~=0.4.3
# pragma nonreentrancy off
# pragma optimize codesize
"""
@title Tessera catalog
@notice The datasets for sale: each listing's policy (schema hash, public
        bounds, tags, allowed operations, minimum cohort, privacy-budget cap,
        prices, the computing nodes' share), the search index by tag, the
        ranking of the top datasets and the analysts' ratings. Providers list,
        update and delist their own datasets; the market (bound once, at
        deployment) alone charges budgets when a query is submitted, gives
        unused budget back, records sales and ratings.
@dev Its own contract since the market's payments and larger bounds (64
     committee members, 256 datasets per query) left no room under EIP-170's
     24,576 bytes for the catalog in `market.vy`.
"""

interface Registry:
    def hasRole(role: bytes32, account: address) -> bool: view


PROVIDER_ROLE: constant(bytes32) = keccak256("tessera.PROVIDER")

MAX_QUERY_DATASETS: constant(uint256) = 256
# a query's dataset list as a caller may send it: one more than the limit, so that a
# longer list is refused with a reason instead of failing to decode
MAX_QUERY_DATASETS_ARG: constant(uint256) = 257
MAX_TAGS: constant(uint256) = 8
MAX_PAGE: constant(uint256) = 128
MAX_TOP: constant(uint256) = 16
BPS: constant(uint256) = 10000
# A query's entry for the market is the provider's cut << 32 | the dataset id, in 128 bits
# (two to a storage word): prices fit in 96 bits and dataset ids in 32.
MAX_PRICE: constant(uint256) = 2**96 - 1
MAX_DATASETS: constant(uint256) = 2**32
QUERIES_MASK: constant(uint256) = 2**64 - 1
MAX_BUDGET: constant(uint256) = 2**192 - 1  # budget spent << 64 | queries in one word
KIND_TRAINING: constant(uint8) = 1


struct Dataset:
    provider: address
    schema_hash: bytes32
    bounds: Bytes[512]
    tags: DynArray[bytes32, MAX_TAGS]
    allowed_operations: uint256
    min_cohort: uint256
    budget_cap: uint256
    budget_spent: uint256
    price_per_query: uint256
    price_per_training: uint256
    node_share_bps: uint256
    allow_exact: bool
    active: bool
    queries: uint256
    revenue: uint256
    buyers: uint256
    rating_sum: uint256
    rating_count: uint256


registry: public(immutable(Registry))
deployer: immutable(address)
market: public(address)

datasets: HashMap[uint256, Dataset]  # budget_spent and queries live in `usage`
usage: HashMap[uint256, uint256]  # budget spent << 64 | queries: one word for `charge`
dataset_count: public(uint256)
tag_entries: HashMap[bytes32, HashMap[uint256, uint256]]
tag_size: public(HashMap[bytes32, uint256])
tag_indexed: HashMap[bytes32, HashMap[uint256, bool]]
bought: HashMap[uint256, HashMap[address, bool]]
rating_of: HashMap[uint256, HashMap[address, uint256]]
top: DynArray[uint256, MAX_TOP]


event DatasetListed:
    dataset_id: indexed(uint256)
    provider: indexed(address)
    schema_hash: bytes32

event DatasetUpdated:
    dataset_id: indexed(uint256)

event DatasetDelisted:
    dataset_id: indexed(uint256)

event Rated:
    dataset_id: indexed(uint256)
    analyst: indexed(address)
    stars: uint256


@deploy
def __init__(registry_: Registry):
    registry = registry_
    deployer = msg.sender


@external
def bind_market(market_: address):
    """@notice The deployer, once: the market, the only contract that may charge budgets."""
    assert msg.sender == deployer, "only the deployer"
    assert self.market == empty(address), "market already bound"
    assert market_ != empty(address), "market is the zero address"
    self.market = market_


@internal
@view
def _only_market():
    assert msg.sender == self.market, "only the market"


# -- listings ------------------------------------------------------------------


@internal
def _index_tags(dataset_id: uint256, tags: DynArray[bytes32, MAX_TAGS]):
    for tag: bytes32 in tags:
        assert tag != empty(bytes32), "empty tag"
        if not self.tag_indexed[tag][dataset_id]:
            self.tag_indexed[tag][dataset_id] = True
            size: uint256 = self.tag_size[tag]
            self.tag_entries[tag][size] = dataset_id
            self.tag_size[tag] = size + 1


@internal
def _write_listing(
    dataset_id: uint256,
    bounds: Bytes[512],
    tags: DynArray[bytes32, MAX_TAGS],
    allowed_operations: uint256,
    min_cohort: uint256,
    budget_cap: uint256,
    price_per_query: uint256,
    price_per_training: uint256,
    node_share_bps: uint256,
    allow_exact: bool,
):
    """A listing's policy (the budget cap never below what is already spent)."""
    assert node_share_bps <= BPS, "node share above 100%"
    assert min_cohort > 0, "minimum cohort must be positive"
    assert budget_cap >= self.usage[dataset_id] >> 64, "cap below spent budget"
    assert price_per_query <= MAX_PRICE and price_per_training <= MAX_PRICE, "price above 2**96 - 1"
    assert budget_cap <= MAX_BUDGET, "budget cap above 2**192 - 1"
    self.datasets[dataset_id].bounds = bounds
    self.datasets[dataset_id].tags = tags
    self.datasets[dataset_id].allowed_operations = allowed_operations
    self.datasets[dataset_id].min_cohort = min_cohort
    self.datasets[dataset_id].budget_cap = budget_cap
    self.datasets[dataset_id].price_per_query = price_per_query
    self.datasets[dataset_id].price_per_training = price_per_training
    self.datasets[dataset_id].node_share_bps = node_share_bps
    self.datasets[dataset_id].allow_exact = allow_exact
    self._index_tags(dataset_id, tags)


@external
def list_dataset(
    schema_hash: bytes32,
    bounds: Bytes[512],
    tags: DynArray[bytes32, MAX_TAGS],
    allowed_operations: uint256,
    min_cohort: uint256,
    budget_cap: uint256,
    price_per_query: uint256,
    price_per_training: uint256,
    node_share_bps: uint256,
    allow_exact: bool,
) -> uint256:
    assert staticcall registry.hasRole(PROVIDER_ROLE, msg.sender), "not a provider"
    dataset_id: uint256 = self.dataset_count
    assert dataset_id < MAX_DATASETS, "catalog full: 2**32 datasets"
    self.datasets[dataset_id].provider = msg.sender
    self.datasets[dataset_id].schema_hash = schema_hash
    self.datasets[dataset_id].active = True
    self.dataset_count = dataset_id + 1
    self._write_listing(
        dataset_id, bounds, tags, allowed_operations, min_cohort, budget_cap,
        price_per_query, price_per_training, node_share_bps, allow_exact,
    )
    log DatasetListed(dataset_id=dataset_id, provider=msg.sender, schema_hash=schema_hash)
    return dataset_id


@internal
@view
def _own_dataset(dataset_id: uint256):
    assert dataset_id < self.dataset_count, "unknown dataset"
    assert self.datasets[dataset_id].provider == msg.sender, "not the dataset's provider"


@external
def update_dataset(
    dataset_id: uint256,
    bounds: Bytes[512],
    tags: DynArray[bytes32, MAX_TAGS],
    allowed_operations: uint256,
    min_cohort: uint256,
    budget_cap: uint256,
    price_per_query: uint256,
    price_per_training: uint256,
    node_share_bps: uint256,
    allow_exact: bool,
):
    """
    @notice Change a listing's policy. The budget cap can never drop below
            what has already been spent; open queries keep the prices and
            payout split they were submitted with.
    """
    self._own_dataset(dataset_id)
    self._write_listing(
        dataset_id, bounds, tags, allowed_operations, min_cohort, budget_cap,
        price_per_query, price_per_training, node_share_bps, allow_exact,
    )
    log DatasetUpdated(dataset_id=dataset_id)


@external
def delist_dataset(dataset_id: uint256):
    self._own_dataset(dataset_id)
    self.datasets[dataset_id].active = False
    log DatasetDelisted(dataset_id=dataset_id)


@external
@view
def dataset(dataset_id: uint256) -> Dataset:
    assert dataset_id < self.dataset_count, "unknown dataset"
    out: Dataset = self.datasets[dataset_id]
    used: uint256 = self.usage[dataset_id]
    out.budget_spent = used >> 64
    out.queries = used & QUERIES_MASK
    return out


@external
@view
def provider_of(dataset_id: uint256) -> address:
    """@notice The provider of a dataset (the zero address if unknown)."""
    return self.datasets[dataset_id].provider


@external
@view
def search_by_tag(tag: bytes32, start: uint256) -> DynArray[uint256, MAX_PAGE]:
    """
    @notice One page of the datasets that ever got `tag`: entries `start` to
            `start + 128` of its index (ids in the order they got it), keeping
            those active and still tagged. The index has no size limit, so
            nobody can fill it for others; read `tag_size(tag)` to page.
    """
    found: DynArray[uint256, MAX_PAGE] = []
    size: uint256 = self.tag_size[tag]
    for i: uint256 in range(MAX_PAGE):
        if start + i >= size:
            break
        dataset_id: uint256 = self.tag_entries[tag][start + i]
        if self.datasets[dataset_id].active and tag in self.datasets[dataset_id].tags:
            found.append(dataset_id)
    return found


# -- ranking -------------------------------------------------------------------


@internal
@view
def _ranks_above(a: uint256, b: uint256) -> bool:
    """Whether dataset `a` ranks above `b`: more distinct paying analysts, then more revenue."""
    ba: uint256 = self.datasets[a].buyers
    bb: uint256 = self.datasets[b].buyers
    if ba != bb:
        return ba > bb
    ra: uint256 = self.datasets[a].revenue
    rb: uint256 = self.datasets[b].revenue
    if ra != rb:
        return ra > rb
    return a < b


@internal
def _rank(dataset_id: uint256):
    """Keep `top` sorted after `dataset_id`'s score went up (scores only ever go up)."""
    ranked: DynArray[uint256, MAX_TOP] = []
    placed: bool = False
    for other: uint256 in self.top:
        if other == dataset_id:
            continue
        if not placed and self._ranks_above(dataset_id, other):
            ranked.append(dataset_id)
            placed = True
        if len(ranked) < MAX_TOP:
            ranked.append(other)
    if not placed and len(ranked) < MAX_TOP:
        ranked.append(dataset_id)
    self.top = ranked


@external
@view
def top_datasets(k: uint256) -> DynArray[uint256, MAX_TOP]:
    """
    @notice Up to `k` datasets ranked by distinct paying analysts, then by
            revenue (ties: earlier listing first). Buying one's own data
            cannot move a dataset: an analyst cannot buy from itself.
    """
    out: DynArray[uint256, MAX_TOP] = []
    for dataset_id: uint256 in self.top:
        if len(out) >= k:
            break
        out.append(dataset_id)
    return out


# -- the market's entry points -----------------------------------------------------


@external
def charge(
    analyst: address,
    dataset_ids: DynArray[uint256, MAX_QUERY_DATASETS_ARG],
    privacy_cost: uint256,
    operations: uint256,
    kind: uint8,
) -> (DynArray[uint256, MAX_QUERY_DATASETS], uint256, uint256):
    """
    @notice Market, at a query's submission: check every dataset (ascending,
            listed, not the analyst's own, allowing the operations and, for a
            cost of 0, exact queries, with `privacy_cost` of budget left) and
            spend that cost of each budget. Returns each dataset's entry for the
            market (provider's cut << 32 | dataset id), the node pool and the
            price.
    """
    self._only_market()
    assert len(dataset_ids) <= MAX_QUERY_DATASETS, "query over more than 256 datasets"
    assert len(dataset_ids) > 0, "no dataset"
    entries: DynArray[uint256, MAX_QUERY_DATASETS] = []
    node_pool: uint256 = 0
    price: uint256 = 0
    previous: uint256 = 0
    for i: uint256 in range(len(dataset_ids), bound=MAX_QUERY_DATASETS):
        dataset_id: uint256 = dataset_ids[i]
        assert i == 0 or dataset_id > previous, "datasets not ascending"
        previous = dataset_id
        assert dataset_id < self.dataset_count, "unknown dataset"
        assert self.datasets[dataset_id].active, "dataset not listed"
        assert self.datasets[dataset_id].provider != analyst, "an analyst cannot buy its own data"
        allowed: uint256 = self.datasets[dataset_id].allowed_operations
        assert operations & ~allowed == 0, "operation not allowed"
        assert privacy_cost > 0 or self.datasets[dataset_id].allow_exact, "dataset does not allow exact queries"
        used: uint256 = self.usage[dataset_id]
        spent: uint256 = used >> 64
        # compared with what remains (spent <= cap always holds): `spent + privacy_cost`
        # would overflow for a huge cost and revert without a reason
        assert privacy_cost <= self.datasets[dataset_id].budget_cap - spent, "privacy budget exceeded"
        self.usage[dataset_id] = (spent + privacy_cost) << 64 | (used & QUERIES_MASK) + 1
        dataset_price: uint256 = self.datasets[dataset_id].price_per_query
        if kind == KIND_TRAINING:
            dataset_price = self.datasets[dataset_id].price_per_training
        node_cut: uint256 = dataset_price * self.datasets[dataset_id].node_share_bps // BPS
        entries.append((dataset_price - node_cut) << 32 | dataset_id)
        node_pool += node_cut
        price += dataset_price
    return entries, node_pool, price


@external
def return_budget(dataset_id: uint256, privacy_cost: uint256):
    """@notice Market: give back a query's cost to a dataset its provider never used."""
    self._only_market()
    self.usage[dataset_id] -= privacy_cost << 64


@external
def record_sale(dataset_id: uint256, analyst: address, amount: uint256) -> bool:
    """
    @notice Market, when a dataset's provider is paid its cut: the revenue, the
            distinct paying analysts and the ranking. Returns whether `analyst`
            paid for this dataset for the first time (its provider then gains
            reputation: reputation and rank count analysts, not purchases).
    """
    self._only_market()
    self.datasets[dataset_id].revenue += amount
    first: bool = not self.bought[dataset_id][analyst]
    if first:
        self.bought[dataset_id][analyst] = True
        self.datasets[dataset_id].buyers += 1
    self._rank(dataset_id)
    return first


@external
def record_rating(dataset_id: uint256, analyst: address, stars: uint256):
    """@notice Market, for the analyst of a query that passed: 1 to 5 stars, once per analyst."""
    self._only_market()
    assert stars >= 1 and stars <= 5, "stars must be 1 to 5"
    previous: uint256 = self.rating_of[dataset_id][analyst]
    if previous == 0:
        self.datasets[dataset_id].rating_count += 1
    else:
        self.datasets[dataset_id].rating_sum -= previous
    self.datasets[dataset_id].rating_sum += stars
    self.rating_of[dataset_id][analyst] = stars
    log Rated(dataset_id=dataset_id, analyst=analyst, stars=stars)
