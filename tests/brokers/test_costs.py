"""Commission and slippage models: hand-worked Decimal amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.brokers.costs import (
    BpsSlippage,
    CommissionModel,
    FlatCommission,
    PerShareCommission,
    SlippageModel,
    ZeroCommission,
    ZeroSlippage,
)
from core.kernel.domain import Side

D = Decimal
IBKR = PerShareCommission(per_share=D("0.005"), minimum=D("1.00"), max_pct=D("0.01"))


def test_per_share_when_below_minimum_then_minimum_is_charged():
    # 100 × 0.005 = 0.50 < 1.00 minimum; cap 1 % × 5,005.00 = 50.05 is not binding
    assert IBKR.commission(100, D("5005.00")) == D("1.00")


def test_per_share_when_above_minimum_then_per_share_is_charged():
    # 1,000 × 0.005 = 5.00; cap 1 % × 50,000 = 500
    assert IBKR.commission(1000, D("50000")) == D("5.00")


def test_per_share_when_cap_is_below_minimum_then_cap_wins():
    # 10 shares worth 50.00: max(0.05, 1.00) = 1.00, capped at 1 % × 50.00 = 0.50
    assert IBKR.commission(10, D("50.00")) == D("0.50")


def test_per_share_rounds_to_the_cent_half_even():
    model = PerShareCommission(per_share=D("0.005"))
    assert model.commission(301, D("1")) == D("1.50")  # 1.505 → 1.50 (banker's rounding)
    assert model.commission(303, D("1")) == D("1.52")  # 1.515 → 1.52


def test_per_share_when_quantity_is_zero_then_nothing_is_charged():
    assert IBKR.commission(0, D("0")) == D("0.00")


def test_flat_commission_is_charged_per_order_whatever_its_size():
    model = FlatCommission(D("4.95"))
    assert model.commission(1, D("10")) == D("4.95")
    assert model.commission(10_000, D("1000000")) == D("4.95")
    assert model.commission(0, D("0")) == D("0.00")


def test_zero_commission_is_zero():
    assert ZeroCommission().commission(500, D("25000")) == D("0.00")


def test_commission_models_refuse_floats_and_negative_amounts():
    with pytest.raises(TypeError):
        PerShareCommission(per_share=0.005)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FlatCommission(D("-1"))
    with pytest.raises(ValueError):
        IBKR.commission(-1, D("0"))


def test_bps_slippage_when_buying_then_pays_up_and_when_selling_then_receives_less():
    slip = BpsSlippage(D("10"))
    assert slip.apply(D("50.00"), Side.BUY) == D("50.0500")
    assert slip.apply(D("50.00"), Side.SELL) == D("49.9500")
    assert slip.apply(D("52.00"), Side.SELL) == D("51.9480")  # 52 × 0.999


def test_bps_slippage_quantises_to_the_price_quantum():
    # 33.33 × 1.0005 = 33.346665 → 33.3467
    assert BpsSlippage(D("5")).apply(D("33.33"), Side.BUY) == D("33.3467")


def test_bps_slippage_refuses_100_percent_or_more():
    with pytest.raises(ValueError):
        BpsSlippage(D("10000"))


def test_zero_slippage_returns_the_price():
    assert ZeroSlippage().apply(D("50.1234"), Side.BUY) == D("50.1234")


def test_models_satisfy_their_protocols_and_describe_themselves():
    for model in (IBKR, FlatCommission(D("1")), ZeroCommission()):
        assert isinstance(model, CommissionModel)
    for slip in (BpsSlippage(D("5")), ZeroSlippage()):
        assert isinstance(slip, SlippageModel)
    assert IBKR.describe() == {"model": "per_share", "per_share": "0.005", "minimum": "1.00", "max_pct": "0.01"}
