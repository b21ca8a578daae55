"""Discovery of priced offers and the cost estimate, against the fake's catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from fakes.fluence_fake import FluenceFake
from fakes.fluence_support import checked_fake, client_for
from okai.compute.fluence import (
    CostLimitExceeded,
    NodeRequirements,
    NoOfferError,
    estimate_cost,
    find_offers,
)
from okai.compute.fluence.cost import balance_shortfall, read_balance
from okai.errors import ExitCode


@pytest.fixture
def fake() -> Iterator[FluenceFake]:
    with checked_fake() as running:
        yield running


def offers(fake: FluenceFake, nodes: int = 2, **req: object) -> list[str]:
    with client_for(fake) as client:
        found = find_offers(client, NodeRequirements(**req), nodes)  # type: ignore[arg-type]
    return [f"{o.cluster.name}/{o.configuration.slug}" for o in found]


def test_offers_are_priced_configurations_cheapest_first(fake: FluenceFake) -> None:
    assert offers(fake) == [
        "fra-1/cpu-regular-2vcpu-4gb",
        "nyc-1/cpu-regular-2vcpu-4gb",
        "fra-1/cpu-regular-4vcpu-8gb",
        "nyc-1/cpu-regular-4vcpu-8gb",
        "fra-1/cpu-premium-8vcpu-16gb",
    ]
    with client_for(fake) as client:
        best = find_offers(client, NodeRequirements(), 2)[0]
    # VM + 25 GB (the storage type's minimum) of disk + one IPv4, per hour.
    assert best.disk_gb == 25
    assert best.node_hourly == Decimal("0.03") + 25 * Decimal("0.0001") + Decimal("0.004")


def test_requirements_filter_cpu_memory_and_place(fake: FluenceFake) -> None:
    assert offers(fake, vcpu=8) == ["fra-1/cpu-premium-8vcpu-16gb"]
    assert offers(fake, ram_gb=8, country="us") == ["nyc-1/cpu-regular-4vcpu-8gb"]
    assert offers(fake, datacenter="NYC", vcpu=4) == ["nyc-1/cpu-regular-4vcpu-8gb"]
    assert offers(fake, datacenter="de-fra-1", vcpu=4)[0] == "fra-1/cpu-regular-4vcpu-8gb"
    assert offers(fake, cluster="nyc-1", configuration="cpu-regular-2vcpu-4gb") == [
        "nyc-1/cpu-regular-2vcpu-4gb"
    ]


def test_clusters_without_enough_public_ips_are_skipped(fake: FluenceFake) -> None:
    assert {o.split("/")[0] for o in offers(fake, nodes=5)} == {"fra-1"}
    with pytest.raises(NoOfferError, match="nyc-1: 4 free public IPv4, 5 needed"):
        offers(fake, nodes=5, country="US")


def test_an_unpriced_configuration_is_never_offered(fake: FluenceFake) -> None:
    with pytest.raises(NoOfferError) as caught:
        offers(fake, configuration="cpu-shared-2vcpu-2gb", vcpu=1, ram_gb=1)
    assert caught.value.exit_code == ExitCode.USAGE_ERROR
    assert "no configuration with" in str(caught.value)


def test_no_match_says_why_and_what_exists(fake: FluenceFake) -> None:
    with pytest.raises(NoOfferError, match="countries on offer: DE, US"):
        offers(fake, country="JP")
    with pytest.raises(NoOfferError, match=r"fra-1: no configuration with >= 64 vCPU"):
        offers(fake, vcpu=64)


def test_the_estimate_agrees_with_the_server_and_enforces_max_usd(fake: FluenceFake) -> None:
    with client_for(fake) as client:
        offer = find_offers(client, NodeRequirements(), 3)[0]
        estimate = estimate_cost(offer, 3, 2.0, client)
    assert estimate.hourly == 3 * offer.node_hourly
    assert estimate.total == estimate.hourly * 2
    assert estimate.server_total == estimate.total
    assert estimate.to_json()["totalUsd"] == "0.22"
    estimate.check_limit(Decimal("0.22"))
    estimate.check_limit(None)
    with pytest.raises(CostLimitExceeded) as caught:
        estimate.check_limit(Decimal("0.2"))
    assert "0.22 USD for 2 h is above the limit of 0.20 USD" in str(caught.value)
    assert "nothing was created" in str(caught.value)


def test_the_higher_of_our_and_the_server_estimate_is_the_limit(fake: FluenceFake) -> None:
    with client_for(fake) as client:
        offer = find_offers(client, NodeRequirements(), 1)[0]
        fake.ip_prices[offer.cluster.id] = Decimal("1")  # the server now charges more than listed
        estimate = estimate_cost(offer, 1, 1.0, client)
    assert estimate.server_total is not None and estimate.server_total > estimate.total
    with pytest.raises(CostLimitExceeded):
        estimate.check_limit(estimate.total)


def test_the_balance_must_cover_six_hours(fake: FluenceFake) -> None:
    with client_for(fake) as client:
        offer = find_offers(client, NodeRequirements(), 2)[0]
        estimate = estimate_cost(offer, 2, 1.0)
        fake.balance = estimate.balance_needed
        balance = read_balance(client)
        assert balance == estimate.balance_needed
        assert balance_shortfall(balance, estimate) is None
        fake.balance = estimate.balance_needed - Decimal("0.01")
        short = balance_shortfall(read_balance(client), estimate)
    assert short is not None and "6 h" in short
