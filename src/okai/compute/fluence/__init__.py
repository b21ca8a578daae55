"""The Fluence provider (CPU Cloud API, spec 0.10.0).

    client      FluenceClient: auth headers, typed errors from `code`, retries, pagination
    models      the DTO fields okai reads
    discovery   clusters, datacenters and priced configurations -> Offer
    cost        CostEstimate for N nodes over a duration; the max_usd limit; the balance rule
    requests    the write requests, built once for both the dry run and `up`
    spec        FluenceClusterSpec (what to bring up) and FluencePlan (the dry run)
    wait        reading resources by ids or exact name; polling with deadlines
    provider    FluenceProvider: plan / up / nodes / down, with the cluster state file
    teardown    down: terminate, delete what terminating leaves, wait until removed
    backend     FluenceBackend: the provider as a cluster backend (okai.compute.cluster), SSH after
    errors      the error tree (see its docstring)

Typical use::

    with FluenceClient.from_settings(settings) as client:
        provider = FluenceProvider(client)
        plan = provider.plan(spec)          # reads only: offer, estimate, exact requests
        state = provider.up(spec, plan)     # creates, waits, rolls back on failure
        provider.down(state)                # removes everything recorded
"""

from okai.compute.fluence.client import (
    DEFAULT_BASE_URL,
    FluenceClient,
    FluenceConfig,
    PlannedRequest,
)
from okai.compute.fluence.cost import CostEstimate, CostLine, estimate_cost
from okai.compute.fluence.discovery import NodeRequirements, Offer, find_offers
from okai.compute.fluence.errors import (
    BalanceTooLow,
    CostLimitExceeded,
    FluenceAuthError,
    FluenceConflict,
    FluenceError,
    FluenceNotFound,
    FluenceRequestError,
    FluenceTimeout,
    FluenceUnavailable,
    InsufficientBalance,
    MissingScopes,
    NoOfferError,
    ResourceFailed,
    VmFailed,
)
from okai.compute.fluence.provider import FluenceProvider
from okai.compute.fluence.spec import (
    FluenceClusterSpec,
    FluencePlan,
    Member,
    NodeContext,
    NodeFiles,
    validate_image_url,
)
from okai.compute.fluence.wait import PollConfig

__all__ = [
    "DEFAULT_BASE_URL",
    "BalanceTooLow",
    "CostEstimate",
    "CostLimitExceeded",
    "CostLine",
    "FluenceAuthError",
    "FluenceClient",
    "FluenceClusterSpec",
    "FluenceConfig",
    "FluenceConflict",
    "FluenceError",
    "FluenceNotFound",
    "FluencePlan",
    "FluenceProvider",
    "FluenceRequestError",
    "FluenceTimeout",
    "FluenceUnavailable",
    "InsufficientBalance",
    "Member",
    "MissingScopes",
    "NoOfferError",
    "NodeContext",
    "NodeFiles",
    "NodeRequirements",
    "Offer",
    "PlannedRequest",
    "PollConfig",
    "ResourceFailed",
    "VmFailed",
    "estimate_cost",
    "find_offers",
    "validate_image_url",
]
