"""The built-in financial reasoning dataset: synthetic word problems with worked solutions.

Needs no download and is fully deterministic from the seed, so runs are reproducible
anywhere. Each question kind is a generator function in the `KINDS` registry; add a
kind by decorating a new `(rng) -> Problem` function with `@register("name")`.
Questions carry their own figures; `rationale` shows the arithmetic in 1-3 sentences
and stops before "The answer is", which the prompt renderer appends.

Besides the numeric `finance` set there are short-answer task sets whose answer is one
word (`SHORT_KINDS`, registered with `@register_short(name, labels)`): each is a task set
of its own (`dataset.name: direction`, ...) and `short` mixes them. Their samples carry
the word in `answer_text` and `answer` None (a text answer, scored by exact match).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from taskvec.data.base import Sample
from taskvec.data.numbers import format_number
from taskvec.errors import TaskvecError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Problem:
    """One generated question; `answer` is already rounded to its reported precision.

    Word-answer problems set `answer_text` (the word) and `answer` None.
    """

    question: str
    answer: float | None
    rationale: str
    answer_text: str | None = None


Generator = Callable[[random.Random], Problem]
KINDS: dict[str, Generator] = {}


def register(name: str) -> Callable[[Generator], Generator]:
    """Add a question generator to `KINDS` under `name` (registration order is the kind order)."""

    def add(generator: Generator) -> Generator:
        KINDS[name] = generator
        return generator

    return add


# --- figures and formatting -------------------------------------------------------------

_PREFIXES = (
    "Apex", "Bluewater", "Cedar Ridge", "Delta Point", "Evergreen", "Falcon", "Granite", "Harbor",
    "Ironwood", "Juniper", "Keystone", "Lakeside", "Meridian", "Northwind", "Orion", "Pinnacle",
    "Quantum", "Redwood", "Silverline", "Summit", "Titan", "Vantage", "Willow", "Zenith",
)  # fmt: skip
_SUFFIXES = (
    "Corp", "Industries", "Holdings", "Group", "Inc.", "Technologies", "Logistics", "Foods",
    "Energy", "Retail", "Pharmaceuticals", "Systems", "Manufacturing", "Financial",
)  # fmt: skip


def _company(rng: random.Random) -> str:
    return f"{rng.choice(_PREFIXES)} {rng.choice(_SUFFIXES)}"


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _year(rng: random.Random, span: int = 1) -> int:
    """A fiscal year such that `year + span` is still in the past."""
    return rng.randint(2008, 2023 - span)


def _millions(rng: random.Random, low: float, high: float) -> float:
    """A figure in millions with one decimal, like a financial statement line."""
    return round(rng.uniform(low, high), 1)


def _n(value: float, decimals: int = 2) -> str:
    """A plain number as written in rationales and gold answers: '4512.3', '-12.5', '7'."""
    return format_number(round(value, decimals), decimals)


def _grouped(value: float, decimals: int = 1) -> str:
    """A number with thousands separators as written in questions: '4,512.3', '250,000'."""
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _usd_m(value: float) -> str:
    return f"${_grouped(value)} million"


# --- question kinds ---------------------------------------------------------------------


@register("percent_change")
def percent_change(rng: random.Random) -> Problem:
    """Year-over-year percentage change of one line item."""
    company, year = _company(rng), _year(rng)
    item = rng.choice(
        ("revenue", "net income", "operating expenses", "total assets", "free cash flow")
    )
    old = _millions(rng, 150, 60000)
    new = round(old * rng.uniform(0.7, 1.45), 1)
    change = round(new - old, 1)
    pct = round(change / old * 100, 2)
    return Problem(
        f"{company} reported {item} of {_usd_m(old)} in {year} and {_usd_m(new)} in {year + 1}. "
        f"What was the percentage change in {item} from {year} to {year + 1}?",
        pct,
        f"Percentage change is the change divided by the {year} value. {item.capitalize()} changed by "
        f"{_n(new, 1)} - {_n(old, 1)} = {_n(change, 1)} million, so the percentage change is "
        f"{_n(change, 1)} / {_n(old, 1)} * 100 = {_n(pct)}%.",
    )


@register("gross_margin")
def gross_margin(rng: random.Random) -> Problem:
    """Gross margin from revenue and cost of goods sold."""
    company, year = _company(rng), _year(rng, 0)
    revenue = _millions(rng, 100, 80000)
    cogs = round(revenue * rng.uniform(0.35, 0.85), 1)
    profit = round(revenue - cogs, 1)
    margin = round(profit / revenue * 100, 2)
    return Problem(
        f"In {year}, {company} had revenue of {_usd_m(revenue)} and cost of goods sold of "
        f"{_usd_m(cogs)}. What was its gross margin in percent?",
        margin,
        f"Gross profit is revenue minus cost of goods sold: {_n(revenue, 1)} - {_n(cogs, 1)} = "
        f"{_n(profit, 1)} million. Gross margin is gross profit as a share of revenue: "
        f"{_n(profit, 1)} / {_n(revenue, 1)} * 100 = {_n(margin)}%.",
    )


@register("operating_margin")
def operating_margin(rng: random.Random) -> Problem:
    """Operating margin after cost of sales and operating expenses."""
    company, year = _company(rng), _year(rng, 0)
    revenue = _millions(rng, 100, 80000)
    cogs = round(revenue * rng.uniform(0.3, 0.6), 1)
    opex = round(revenue * rng.uniform(0.1, 0.3), 1)
    income = round(revenue - cogs - opex, 1)
    margin = round(income / revenue * 100, 2)
    return Problem(
        f"{company} recorded {year} revenue of {_usd_m(revenue)}, cost of sales of {_usd_m(cogs)} and "
        f"operating expenses of {_usd_m(opex)}. What was its operating margin in percent?",
        margin,
        "Operating income is revenue minus cost of sales and operating expenses: "
        f"{_n(revenue, 1)} - {_n(cogs, 1)} - {_n(opex, 1)} = {_n(income, 1)} million. Operating margin is "
        f"operating income as a share of revenue: {_n(income, 1)} / {_n(revenue, 1)} * 100 = {_n(margin)}%.",
    )


@register("net_margin")
def net_margin(rng: random.Random) -> Problem:
    """Net profit margin from net income and revenue."""
    company, year = _company(rng), _year(rng, 0)
    revenue = _millions(rng, 100, 80000)
    income = round(revenue * rng.uniform(0.02, 0.3), 1)
    margin = round(income / revenue * 100, 2)
    return Problem(
        f"{company} earned net income of {_usd_m(income)} on revenue of {_usd_m(revenue)} in {year}. "
        "What was its net profit margin in percent?",
        margin,
        "Net margin is the share of revenue kept as profit after all expenses, so divide net income "
        "by revenue: "
        f"{_n(income, 1)} / {_n(revenue, 1)} * 100 = {_n(margin)}%.",
    )


@register("current_ratio")
def current_ratio(rng: random.Random) -> Problem:
    """Liquidity: current assets over current liabilities."""
    company, year = _company(rng), _year(rng, 0)
    liabilities = _millions(rng, 50, 30000)
    assets = round(liabilities * rng.uniform(0.6, 3.0), 1)
    ratio = round(assets / liabilities, 2)
    return Problem(
        f"At the end of {year}, {company} had current assets of {_usd_m(assets)} and current "
        f"liabilities of {_usd_m(liabilities)}. What was its current ratio?",
        ratio,
        "The current ratio shows how many times current assets cover the obligations due within a "
        f"year, so divide current assets by current liabilities: {_n(assets, 1)} / {_n(liabilities, 1)} "
        f"= {_n(ratio)}.",
    )


@register("debt_to_equity")
def debt_to_equity(rng: random.Random) -> Problem:
    """Leverage: short- plus long-term debt over shareholders' equity."""
    company, year = _company(rng), _year(rng, 0)
    equity = _millions(rng, 100, 50000)
    short = round(equity * rng.uniform(0.02, 0.4), 1)
    long = round(equity * rng.uniform(0.1, 1.8), 1)
    debt = round(short + long, 1)
    ratio = round(debt / equity, 2)
    return Problem(
        f"{_possessive(company)} {year} balance sheet shows short-term debt of {_usd_m(short)}, "
        "long-term debt of "
        f"{_usd_m(long)} and shareholders' equity of {_usd_m(equity)}. What is its debt-to-equity ratio?",
        ratio,
        f"Total debt is short-term plus long-term debt: {_n(short, 1)} + {_n(long, 1)} = {_n(debt, 1)} "
        "million. Debt-to-equity divides total debt by shareholders' equity: "
        f"{_n(debt, 1)} / {_n(equity, 1)} = {_n(ratio)}.",
    )


@register("cagr")
def cagr(rng: random.Random) -> Problem:
    """Compound annual growth rate between two years."""
    company, years = _company(rng), rng.randint(2, 8)
    start_year = _year(rng, years)
    start = _millions(rng, 100, 40000)
    end = round(start * rng.uniform(0.8, 2.8), 1)
    ratio = end / start
    growth = ratio ** (1 / years)
    rate = round((growth - 1) * 100, 2)
    return Problem(
        f"{_possessive(company)} revenue grew from {_usd_m(start)} in {start_year} to {_usd_m(end)} in "
        f"{start_year + years}. What was the compound annual growth rate over these {years} years, "
        "in percent?",
        rate,
        f"Revenue multiplied by {_n(end, 1)} / {_n(start, 1)} = {_n(ratio, 4)} over {years} years. "
        f"The yearly factor is {_n(ratio, 4)}^(1/{years}) = {_n(growth, 4)}, "
        f"so CAGR = ({_n(growth, 4)} - 1) * 100 = {_n(rate)}%.",
    )


@register("simple_interest")
def simple_interest(rng: random.Random) -> Problem:
    """Interest earned without compounding."""
    principal = rng.randrange(1000, 250001, 500)
    rate = rng.randrange(150, 901, 25) / 100
    years = rng.randint(1, 10)
    interest = round(principal * rate / 100 * years, 2)
    return Problem(
        f"A company deposits ${_grouped(principal)} in a note paying {_n(rate)}% simple interest per year. "
        f"How much interest, in dollars, does it earn over {years} years?",
        interest,
        "Simple interest is earned on the principal only, each year at the same rate, so multiply "
        f"principal, annual rate and years: {principal} * {_n(rate / 100, 4)} * {years} = {_n(interest)}.",
    )


_COMPOUNDING = {"annually": 1, "semiannually": 2, "quarterly": 4, "monthly": 12}


@register("compound_interest")
def compound_interest(rng: random.Random) -> Problem:
    """Future value with periodic compounding."""
    principal = rng.randrange(1000, 100001, 500)
    rate = rng.randrange(100, 901, 25) / 100
    years = rng.randint(2, 15)
    frequency = rng.choice(tuple(_COMPOUNDING))
    periods = _COMPOUNDING[frequency]
    balance = round(principal * (1 + rate / 100 / periods) ** (periods * years), 2)
    return Problem(
        f"An investor places ${_grouped(principal)} in an account paying {_n(rate)}% per year, compounded "
        f"{frequency}. What is the balance in dollars after {years} years?",
        balance,
        f"Interest compounds {frequency} ({periods} per year), so there are {periods} * {years} = "
        f"{periods * years} periods at a rate of {_n(rate / 100, 4)}/{periods} each. The balance is "
        f"{principal} * (1 + {_n(rate / 100, 4)}/{periods})^{periods * years} = {_n(balance)}.",
    )


@register("earnings_per_share")
def earnings_per_share(rng: random.Random) -> Problem:
    """Basic EPS net of preferred dividends."""
    company, year = _company(rng), _year(rng, 0)
    shares = _millions(rng, 20, 3000)
    income = round(shares * rng.uniform(0.3, 9.0), 1)
    preferred = round(income * rng.uniform(0.01, 0.08), 1)
    available = round(income - preferred, 1)
    eps = round(available / shares, 2)
    return Problem(
        f"In {year}, {company} earned net income of {_usd_m(income)}, paid preferred dividends of "
        f"{_usd_m(preferred)} and had {_grouped(shares)} million weighted average common shares "
        "outstanding. What was its basic earnings per share in dollars?",
        eps,
        f"Basic EPS uses income available to common shareholders, {_n(income, 1)} - {_n(preferred, 1)} = "
        f"{_n(available, 1)} million, divided by the weighted average shares: "
        f"{_n(available, 1)} / {_n(shares, 1)} = {_n(eps)}.",
    )


@register("dividend_yield")
def dividend_yield(rng: random.Random) -> Problem:
    """Annual dividend yield from a quarterly dividend and the share price."""
    company = _company(rng)
    quarterly = rng.randrange(5, 251) / 100
    price = round(quarterly * 4 / rng.uniform(0.008, 0.07), 2)
    annual = round(quarterly * 4, 2)
    yield_pct = round(annual / price * 100, 2)
    return Problem(
        f"{company} pays a quarterly dividend of ${_n(quarterly)} per share and its stock trades at "
        f"${_grouped(price, 2)}. What is its annual dividend yield in percent?",
        yield_pct,
        f"The annual dividend is four quarterly payments, 4 * {_n(quarterly)} = {_n(annual)} per share. "
        "Dividend yield is the annual dividend divided by the share price: "
        f"{_n(annual)} / {_n(price)} * 100 = {_n(yield_pct)}%.",
    )


@register("payout_ratio")
def payout_ratio(rng: random.Random) -> Problem:
    """Share of net income paid out as dividends."""
    company, year = _company(rng), _year(rng, 0)
    income = _millions(rng, 50, 20000)
    dividends = round(income * rng.uniform(0.1, 0.8), 1)
    ratio = round(dividends / income * 100, 2)
    return Problem(
        f"{company} paid {_usd_m(dividends)} in dividends in {year}, when its net income was "
        f"{_usd_m(income)}. What was its dividend payout ratio in percent?",
        ratio,
        "The payout ratio is the share of net income paid out as dividends, so divide dividends by "
        "net income: "
        f"{_n(dividends, 1)} / {_n(income, 1)} * 100 = {_n(ratio)}%.",
    )


@register("pe_ratio")
def pe_ratio(rng: random.Random) -> Problem:
    """Price-to-earnings from price, net income and share count (EPS reported to the cent)."""
    company, year = _company(rng), _year(rng, 0)
    shares = _millions(rng, 20, 3000)
    income = round(shares * rng.uniform(0.5, 9.0), 1)
    eps = round(income / shares, 2)
    price = round(eps * rng.uniform(6, 45), 2)
    pe = round(price / eps, 2)
    return Problem(
        f"{company} reported {year} net income of {_usd_m(income)} with {_grouped(shares)} million shares "
        f"outstanding, and its stock closed the year at ${_grouped(price, 2)}. What is its P/E ratio, "
        "using EPS rounded to the cent?",
        pe,
        f"EPS is net income divided by shares outstanding: {_n(income, 1)} / {_n(shares, 1)} = {_n(eps)}. "
        f"The P/E ratio is the share price divided by EPS: {_n(price)} / {_n(eps)} = {_n(pe)}.",
    )


@register("return_on_equity")
def return_on_equity(rng: random.Random) -> Problem:
    """ROE on average shareholders' equity."""
    company, year = _company(rng), _year(rng, 0)
    begin = _millions(rng, 200, 60000)
    end = round(begin * rng.uniform(0.85, 1.3), 1)
    average = round((begin + end) / 2, 2)
    income = round(average * rng.uniform(0.03, 0.3), 1)
    roe = round(income / average * 100, 2)
    return Problem(
        f"{_possessive(company)} shareholders' equity was {_usd_m(begin)} at the start of {year} and "
        f"{_usd_m(end)} at its end, and net income for {year} was {_usd_m(income)}. "
        "What was its return on average equity in percent?",
        roe,
        "Return on average equity divides net income by the average of opening and closing equity. "
        f"Average equity is ({_n(begin, 1)} + {_n(end, 1)}) / 2 = {_n(average)} million, so ROE is "
        f"{_n(income, 1)} / {_n(average)} * 100 = {_n(roe)}%.",
    )


@register("return_on_assets")
def return_on_assets(rng: random.Random) -> Problem:
    """ROA from net income and total assets."""
    company, year = _company(rng), _year(rng, 0)
    assets = _millions(rng, 200, 150000)
    income = round(assets * rng.uniform(0.005, 0.15), 1)
    roa = round(income / assets * 100, 2)
    return Problem(
        f"{company} had total assets of {_usd_m(assets)} and net income of {_usd_m(income)} in {year}. "
        "What was its return on assets in percent?",
        roa,
        "Return on assets measures how much profit each dollar of assets produces, so divide net income "
        "by total assets: "
        f"{_n(income, 1)} / {_n(assets, 1)} * 100 = {_n(roa)}%.",
    )


@register("break_even_units")
def break_even_units(rng: random.Random) -> Problem:
    """Units needed to cover fixed costs, rounded up to whole units."""
    company = _company(rng)
    fixed = rng.randrange(50, 2001) * 1000
    price = rng.randint(20, 500)
    variable = round(price * rng.uniform(0.3, 0.8))
    margin = price - variable
    units = -(-fixed // margin)
    exact = fixed / margin
    ending = f"{units} units" if units == exact else f"{_n(exact)}, rounded up to {units} units"
    return Problem(
        f"{company} sells a product for ${price} per unit with a variable cost of ${variable} per unit "
        f"and fixed costs of ${_grouped(fixed)} per year. How many units must it sell to break even?",
        float(units),
        f"Each unit contributes {price} - {variable} = {margin} dollars toward fixed costs. "
        f"Break-even volume is {fixed} / {margin} = {ending}.",
    )


@register("average")
def average(rng: random.Random) -> Problem:
    """Mean of quarterly figures."""
    company, year = _company(rng), _year(rng, 0)
    item = rng.choice(("revenue", "operating income", "capital expenditures", "net sales"))
    base = rng.uniform(50, 20000)
    quarters = [round(base * rng.uniform(0.8, 1.2), 1) for _ in range(4)]
    total = round(sum(quarters), 1)
    mean = round(total / 4, 2)
    listed = ", ".join(_usd_m(q) for q in quarters[:3]) + f" and {_usd_m(quarters[3])}"
    return Problem(
        f"{company} reported quarterly {item} of {listed} for Q1 through Q4 of {year}. "
        f"What was its average quarterly {item}, in millions of dollars?",
        mean,
        "The average is the total of the four quarters divided by 4. The total is "
        f"{' + '.join(_n(q, 1) for q in quarters)} = {_n(total, 1)} million, and "
        f"{_n(total, 1)} / 4 = {_n(mean)}.",
    )


@register("difference")
def difference(rng: random.Random) -> Problem:
    """Change in a line item between two years, signed."""
    company, year = _company(rng), _year(rng)
    item = rng.choice(
        ("cash and equivalents", "long-term debt", "inventory", "accounts receivable")
    )
    old = _millions(rng, 20, 30000)
    new = round(old * rng.uniform(0.75, 1.3), 1)
    change = round(new - old, 1)
    direction = "an increase" if change >= 0 else "a decrease"
    return Problem(
        f"{_possessive(company)} {item} was {_usd_m(old)} at the end of {year} and {_usd_m(new)} "
        "at the end of "
        f"{year + 1}. By how many millions of dollars did it change ({year + 1} minus {year})?",
        change,
        f"The change is the {year + 1} balance minus the {year} balance: "
        f"{_n(new, 1)} - {_n(old, 1)} = {_n(change, 1)} million, {direction} in {item}.",
    )


# --- short-answer (one word) kinds -------------------------------------------------------

SHORT_KINDS: dict[str, Generator] = {}
LABELS: dict[
    str, tuple[str, str]
] = {}  # kind -> its two answer words (one token each for common BPEs)


def register_short(name: str, labels: tuple[str, str]) -> Callable[[Generator], Generator]:
    """Add a one-word-answer generator to `SHORT_KINDS`; its answers are drawn from `labels`."""

    def add(generator: Generator) -> Generator:
        SHORT_KINDS[name] = generator
        LABELS[name] = labels
        return generator

    return add


def _word(kind: str, label: int, question: str, rationale: str) -> Problem:
    return Problem(question, None, rationale, LABELS[kind][label])


def _pair(rng: random.Random, low: float, high: float) -> tuple[float, float]:
    """Two distinct figures (one decimal) at least 5% apart, in random order."""
    while True:
        a, b = _millions(rng, low, high), _millions(rng, low, high)
        if abs(a - b) >= 0.05 * max(a, b):
            return a, b


def _short_m(value: float) -> str:
    return f"${_grouped(value)}M"


@register_short("direction", ("up", "down"))
def direction(rng: random.Random) -> Problem:
    """Did a line item go up or down between two years?"""
    item = rng.choice(
        ("Revenue", "Net income", "Operating expenses", "Free cash flow", "Inventory", "Total debt")
    )
    old, new = _pair(rng, 1, 900)
    label = 0 if new > old else 1
    return _word(
        "direction",
        label,
        f"{item} went from {_short_m(old)} to {_short_m(new)}. Direction:",
        f"{_short_m(new)} is {'more' if label == 0 else 'less'} than {_short_m(old)}.",
    )


@register_short("profit_or_loss", ("profit", "loss"))
def profit_or_loss(rng: random.Random) -> Problem:
    """Do revenues exceed costs?"""
    revenue, costs = (round(x) for x in _pair(rng, 20, 990))
    while revenue == costs:
        costs += 1
    label = 0 if revenue > costs else 1
    return _word(
        "profit_or_loss",
        label,
        f"Revenue {revenue}, costs {costs}. Result:",
        f"Revenue minus costs is {revenue} - {costs} = {revenue - costs}.",
    )


@register_short("which_larger", ("first", "second"))
def which_larger(rng: random.Random) -> Problem:
    """Which of two companies reported the larger figure?"""
    item = rng.choice(("revenue", "net income", "total assets", "cash"))
    first, second = _company(rng), _company(rng)
    while second == first:
        second = _company(rng)
    a, b = _pair(rng, 1, 900)
    label = 0 if a > b else 1
    return _word(
        "which_larger",
        label,
        f"{first} {item} {_short_m(a)}; {second} {item} {_short_m(b)}. Larger:",
        f"{_short_m(max(a, b))} is more than {_short_m(min(a, b))}.",
    )


@register_short("above_one", ("yes", "no"))
def above_one(rng: random.Random) -> Problem:
    """Is a ratio (current assets / current liabilities) above 1?"""
    assets, liabilities = _pair(rng, 5, 900)
    label = 0 if assets > liabilities else 1
    return _word(
        "above_one",
        label,
        f"Current assets {_short_m(assets)}, current liabilities {_short_m(liabilities)}. Current "
        "ratio above 1:",
        f"The current ratio is {_n(assets, 1)} / {_n(liabilities, 1)} = {_n(assets / liabilities)}.",
    )


TASK_SETS: dict[str, dict[str, Generator]] = {"finance": KINDS, "short": SHORT_KINDS}
"""Named task sets; `easy.py` adds `finance_easy`. Every kind is also a set of its own."""


def task_set(name: str | None) -> dict[str, Generator]:
    """The kinds of builtin task set `name` (default `finance`), or the one kind so named."""
    if name in TASK_SETS or name is None:
        return TASK_SETS[name or "finance"]
    for kinds in TASK_SETS.values():
        if name in kinds:
            return {name: kinds[name]}
    raise TaskvecError(
        f"builtin task set '{name}' is unknown; use one of: {', '.join(task_set_names())}"
    )


def task_set_names() -> tuple[str, ...]:
    """Every name `task_set` accepts: the sets, then each kind."""
    return (*TASK_SETS, *(kind for kinds in TASK_SETS.values() for kind in kinds))


# --- splits -----------------------------------------------------------------------------


def _split_seed(seed: int, split: str, name: str = "finance") -> int:
    """A stable per-split (and per task set) seed (Python's hash() is salted per process)."""
    key = f"{seed}:{split}" if name == "finance" else f"{seed}:{split}:{name}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _owner(question: str) -> str:
    """The one split allowed to hold `question`, so train and test never share a text."""
    return SPLITS[hashlib.sha256(question.encode()).digest()[0] % len(SPLITS)]


def _draw(generator: Generator, rng: random.Random, split: str, seen: set[str]) -> Problem:
    """A fresh problem owned by `split` and not yet in it."""
    while True:
        problem = generator(rng)
        if problem.question not in seen and _owner(problem.question) == split:
            return problem


def generate_labeled(
    split: str, n: int, seed: int = 0, name: str = "finance"
) -> list[tuple[str, Sample]]:
    """`n` samples of `split` of task set `name` with their kind names; kinds are dealt in
    shuffled rounds so all appear."""
    if split not in SPLITS:
        raise TaskvecError(
            f"builtin dataset has no split '{split}'; use one of: {', '.join(SPLITS)}"
        )
    kinds = task_set(name)
    rng = random.Random(_split_seed(seed, split, name))
    seen: set[str] = set()
    out: list[tuple[str, Sample]] = []
    while len(out) < n:
        order = list(kinds)
        rng.shuffle(order)
        for kind in order[: n - len(out)]:
            problem = _draw(kinds[kind], rng, split, seen)
            seen.add(problem.question)
            sample = Sample(
                id=f"{split}_{len(out)}",
                question=problem.question,
                answer=problem.answer,
                answer_text=format_number(problem.answer)
                if problem.answer is not None
                else str(problem.answer_text),
                rationale=problem.rationale,
            )
            out.append((kind, sample))
    return out


def generate_split(split: str, n: int, seed: int = 0, name: str = "finance") -> list[Sample]:
    """`n` deterministic samples of `split` ("train" or "test") of builtin task set `name`."""
    return [sample for _, sample in generate_labeled(split, n, seed, name)]
