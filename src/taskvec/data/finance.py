"""The `finance` task set: multi-step financial word problems with worked solutions.

Each question kind is a generator in `KINDS`; add one by decorating a new `(rng) -> Problem`
function with `@register("name")`. Figures are five- and six-digit amounts with decimals.
"""

from __future__ import annotations

import random

from taskvec.data.problems import (
    Generator,
    Problem,
    company_name,
    fiscal_year,
    grouped,
    millions,
    num,
    possessive,
    registrar,
    usd_m,
)

KINDS: dict[str, Generator] = {}
register = registrar(KINDS)


@register("percent_change")
def percent_change(rng: random.Random) -> Problem:
    """Year-over-year percentage change of one line item."""
    company, year = company_name(rng), fiscal_year(rng)
    item = rng.choice(
        ("revenue", "net income", "operating expenses", "total assets", "free cash flow")
    )
    old = millions(rng, 150, 60000)
    new = round(old * rng.uniform(0.7, 1.45), 1)
    change = round(new - old, 1)
    pct = round(change / old * 100, 2)
    return Problem(
        f"{company} reported {item} of {usd_m(old)} in {year} and {usd_m(new)} in {year + 1}. "
        f"What was the percentage change in {item} from {year} to {year + 1}?",
        pct,
        f"Percentage change is the change divided by the {year} value. {item.capitalize()} changed by "
        f"{num(new, 1)} - {num(old, 1)} = {num(change, 1)} million, so the percentage change is "
        f"{num(change, 1)} / {num(old, 1)} * 100 = {num(pct)}%.",
    )


@register("gross_margin")
def gross_margin(rng: random.Random) -> Problem:
    """Gross margin from revenue and cost of goods sold."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    revenue = millions(rng, 100, 80000)
    cogs = round(revenue * rng.uniform(0.35, 0.85), 1)
    profit = round(revenue - cogs, 1)
    margin = round(profit / revenue * 100, 2)
    return Problem(
        f"In {year}, {company} had revenue of {usd_m(revenue)} and cost of goods sold of "
        f"{usd_m(cogs)}. What was its gross margin in percent?",
        margin,
        f"Gross profit is revenue minus cost of goods sold: {num(revenue, 1)} - {num(cogs, 1)} = "
        f"{num(profit, 1)} million. Gross margin is gross profit as a share of revenue: "
        f"{num(profit, 1)} / {num(revenue, 1)} * 100 = {num(margin)}%.",
    )


@register("operating_margin")
def operating_margin(rng: random.Random) -> Problem:
    """Operating margin after cost of sales and operating expenses."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    revenue = millions(rng, 100, 80000)
    cogs = round(revenue * rng.uniform(0.3, 0.6), 1)
    opex = round(revenue * rng.uniform(0.1, 0.3), 1)
    income = round(revenue - cogs - opex, 1)
    margin = round(income / revenue * 100, 2)
    return Problem(
        f"{company} recorded {year} revenue of {usd_m(revenue)}, cost of sales of {usd_m(cogs)} and "
        f"operating expenses of {usd_m(opex)}. What was its operating margin in percent?",
        margin,
        "Operating income is revenue minus cost of sales and operating expenses: "
        f"{num(revenue, 1)} - {num(cogs, 1)} - {num(opex, 1)} = {num(income, 1)} million. "
        "Operating margin is operating income as a share of revenue: "
        f"{num(income, 1)} / {num(revenue, 1)} * 100 = {num(margin)}%.",
    )


@register("net_margin")
def net_margin(rng: random.Random) -> Problem:
    """Net profit margin from net income and revenue."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    revenue = millions(rng, 100, 80000)
    income = round(revenue * rng.uniform(0.02, 0.3), 1)
    margin = round(income / revenue * 100, 2)
    return Problem(
        f"{company} earned net income of {usd_m(income)} on revenue of {usd_m(revenue)} in {year}. "
        "What was its net profit margin in percent?",
        margin,
        "Net margin is the share of revenue kept as profit after all expenses, so divide net income "
        "by revenue: "
        f"{num(income, 1)} / {num(revenue, 1)} * 100 = {num(margin)}%.",
    )


@register("current_ratio")
def current_ratio(rng: random.Random) -> Problem:
    """Liquidity: current assets over current liabilities."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    liabilities = millions(rng, 50, 30000)
    assets = round(liabilities * rng.uniform(0.6, 3.0), 1)
    ratio = round(assets / liabilities, 2)
    return Problem(
        f"At the end of {year}, {company} had current assets of {usd_m(assets)} and current "
        f"liabilities of {usd_m(liabilities)}. What was its current ratio?",
        ratio,
        "The current ratio shows how many times current assets cover the obligations due within a "
        f"year, so divide current assets by current liabilities: {num(assets, 1)} / {num(liabilities, 1)} "
        f"= {num(ratio)}.",
    )


@register("debt_to_equity")
def debt_to_equity(rng: random.Random) -> Problem:
    """Leverage: short- plus long-term debt over shareholders' equity."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    equity = millions(rng, 100, 50000)
    short = round(equity * rng.uniform(0.02, 0.4), 1)
    long = round(equity * rng.uniform(0.1, 1.8), 1)
    debt = round(short + long, 1)
    ratio = round(debt / equity, 2)
    return Problem(
        f"{possessive(company)} {year} balance sheet shows short-term debt of {usd_m(short)}, "
        "long-term debt of "
        f"{usd_m(long)} and shareholders' equity of {usd_m(equity)}. What is its debt-to-equity ratio?",
        ratio,
        f"Total debt is short-term plus long-term debt: {num(short, 1)} + {num(long, 1)} = {num(debt, 1)} "
        "million. Debt-to-equity divides total debt by shareholders' equity: "
        f"{num(debt, 1)} / {num(equity, 1)} = {num(ratio)}.",
    )


@register("cagr")
def cagr(rng: random.Random) -> Problem:
    """Compound annual growth rate between two years."""
    company, years = company_name(rng), rng.randint(2, 8)
    start_year = fiscal_year(rng, years)
    start = millions(rng, 100, 40000)
    end = round(start * rng.uniform(0.8, 2.8), 1)
    ratio = end / start
    growth = ratio ** (1 / years)
    rate = round((growth - 1) * 100, 2)
    return Problem(
        f"{possessive(company)} revenue grew from {usd_m(start)} in {start_year} to {usd_m(end)} in "
        f"{start_year + years}. What was the compound annual growth rate over these {years} years, "
        "in percent?",
        rate,
        f"Revenue multiplied by {num(end, 1)} / {num(start, 1)} = {num(ratio, 4)} over {years} years. "
        f"The yearly factor is {num(ratio, 4)}^(1/{years}) = {num(growth, 4)}, "
        f"so CAGR = ({num(growth, 4)} - 1) * 100 = {num(rate)}%.",
    )


@register("simple_interest")
def simple_interest(rng: random.Random) -> Problem:
    """Interest earned without compounding."""
    principal = rng.randrange(1000, 250001, 500)
    rate = rng.randrange(150, 901, 25) / 100
    years = rng.randint(1, 10)
    interest = round(principal * rate / 100 * years, 2)
    return Problem(
        f"A company deposits ${grouped(principal)} in a note paying {num(rate)}% simple interest per year. "
        f"How much interest, in dollars, does it earn over {years} years?",
        interest,
        "Simple interest is earned on the principal only, each year at the same rate, so multiply "
        f"principal, annual rate and years: {principal} * {num(rate / 100, 4)} * {years} = {num(interest)}.",
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
        f"An investor places ${grouped(principal)} in an account paying {num(rate)}% per year, compounded "
        f"{frequency}. What is the balance in dollars after {years} years?",
        balance,
        f"Interest compounds {frequency} ({periods} per year), so there are {periods} * {years} = "
        f"{periods * years} periods at a rate of {num(rate / 100, 4)}/{periods} each. The balance is "
        f"{principal} * (1 + {num(rate / 100, 4)}/{periods})^{periods * years} = {num(balance)}.",
    )


@register("earnings_per_share")
def earnings_per_share(rng: random.Random) -> Problem:
    """Basic EPS net of preferred dividends."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    shares = millions(rng, 20, 3000)
    income = round(shares * rng.uniform(0.3, 9.0), 1)
    preferred = round(income * rng.uniform(0.01, 0.08), 1)
    available = round(income - preferred, 1)
    eps = round(available / shares, 2)
    return Problem(
        f"In {year}, {company} earned net income of {usd_m(income)}, paid preferred dividends of "
        f"{usd_m(preferred)} and had {grouped(shares)} million weighted average common shares "
        "outstanding. What was its basic earnings per share in dollars?",
        eps,
        f"Basic EPS uses income available to common shareholders, {num(income, 1)} - {num(preferred, 1)} = "
        f"{num(available, 1)} million, divided by the weighted average shares: "
        f"{num(available, 1)} / {num(shares, 1)} = {num(eps)}.",
    )


@register("dividend_yield")
def dividend_yield(rng: random.Random) -> Problem:
    """Annual dividend yield from a quarterly dividend and the share price."""
    company = company_name(rng)
    quarterly = rng.randrange(5, 251) / 100
    price = round(quarterly * 4 / rng.uniform(0.008, 0.07), 2)
    annual = round(quarterly * 4, 2)
    yield_pct = round(annual / price * 100, 2)
    return Problem(
        f"{company} pays a quarterly dividend of ${num(quarterly)} per share and its stock trades at "
        f"${grouped(price, 2)}. What is its annual dividend yield in percent?",
        yield_pct,
        f"The annual dividend is four quarterly payments, 4 * {num(quarterly)} = {num(annual)} per share. "
        "Dividend yield is the annual dividend divided by the share price: "
        f"{num(annual)} / {num(price)} * 100 = {num(yield_pct)}%.",
    )


@register("payout_ratio")
def payout_ratio(rng: random.Random) -> Problem:
    """Share of net income paid out as dividends."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    income = millions(rng, 50, 20000)
    dividends = round(income * rng.uniform(0.1, 0.8), 1)
    ratio = round(dividends / income * 100, 2)
    return Problem(
        f"{company} paid {usd_m(dividends)} in dividends in {year}, when its net income was "
        f"{usd_m(income)}. What was its dividend payout ratio in percent?",
        ratio,
        "The payout ratio is the share of net income paid out as dividends, so divide dividends by "
        "net income: "
        f"{num(dividends, 1)} / {num(income, 1)} * 100 = {num(ratio)}%.",
    )


@register("pe_ratio")
def pe_ratio(rng: random.Random) -> Problem:
    """Price-to-earnings from price, net income and share count (EPS reported to the cent)."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    shares = millions(rng, 20, 3000)
    income = round(shares * rng.uniform(0.5, 9.0), 1)
    eps = round(income / shares, 2)
    price = round(eps * rng.uniform(6, 45), 2)
    pe = round(price / eps, 2)
    return Problem(
        f"{company} reported {year} net income of {usd_m(income)} with {grouped(shares)} million shares "
        f"outstanding, and its stock closed the year at ${grouped(price, 2)}. What is its P/E ratio, "
        "using EPS rounded to the cent?",
        pe,
        f"EPS is net income divided by shares outstanding: {num(income, 1)} / {num(shares, 1)} = {num(eps)}. "
        f"The P/E ratio is the share price divided by EPS: {num(price)} / {num(eps)} = {num(pe)}.",
    )


@register("return_on_equity")
def return_on_equity(rng: random.Random) -> Problem:
    """ROE on average shareholders' equity."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    begin = millions(rng, 200, 60000)
    end = round(begin * rng.uniform(0.85, 1.3), 1)
    average = round((begin + end) / 2, 2)
    income = round(average * rng.uniform(0.03, 0.3), 1)
    roe = round(income / average * 100, 2)
    return Problem(
        f"{possessive(company)} shareholders' equity was {usd_m(begin)} at the start of {year} and "
        f"{usd_m(end)} at its end, and net income for {year} was {usd_m(income)}. "
        "What was its return on average equity in percent?",
        roe,
        "Return on average equity divides net income by the average of opening and closing equity. "
        f"Average equity is ({num(begin, 1)} + {num(end, 1)}) / 2 = {num(average)} million, so ROE is "
        f"{num(income, 1)} / {num(average)} * 100 = {num(roe)}%.",
    )


@register("return_on_assets")
def return_on_assets(rng: random.Random) -> Problem:
    """ROA from net income and total assets."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    assets = millions(rng, 200, 150000)
    income = round(assets * rng.uniform(0.005, 0.15), 1)
    roa = round(income / assets * 100, 2)
    return Problem(
        f"{company} had total assets of {usd_m(assets)} and net income of {usd_m(income)} in {year}. "
        "What was its return on assets in percent?",
        roa,
        "Return on assets measures how much profit each dollar of assets produces, so divide net income "
        "by total assets: "
        f"{num(income, 1)} / {num(assets, 1)} * 100 = {num(roa)}%.",
    )


@register("break_even_units")
def break_even_units(rng: random.Random) -> Problem:
    """Units needed to cover fixed costs, rounded up to whole units."""
    company = company_name(rng)
    fixed = rng.randrange(50, 2001) * 1000
    price = rng.randint(20, 500)
    variable = round(price * rng.uniform(0.3, 0.8))
    margin = price - variable
    units = -(-fixed // margin)
    exact = fixed / margin
    ending = f"{units} units" if units == exact else f"{num(exact)}, rounded up to {units} units"
    return Problem(
        f"{company} sells a product for ${price} per unit with a variable cost of ${variable} per unit "
        f"and fixed costs of ${grouped(fixed)} per year. How many units must it sell to break even?",
        float(units),
        f"Each unit contributes {price} - {variable} = {margin} dollars toward fixed costs. "
        f"Break-even volume is {fixed} / {margin} = {ending}.",
    )


@register("average")
def average(rng: random.Random) -> Problem:
    """Mean of quarterly figures."""
    company, year = company_name(rng), fiscal_year(rng, 0)
    item = rng.choice(("revenue", "operating income", "capital expenditures", "net sales"))
    base = rng.uniform(50, 20000)
    quarters = [round(base * rng.uniform(0.8, 1.2), 1) for _ in range(4)]
    total = round(sum(quarters), 1)
    mean = round(total / 4, 2)
    listed = ", ".join(usd_m(q) for q in quarters[:3]) + f" and {usd_m(quarters[3])}"
    return Problem(
        f"{company} reported quarterly {item} of {listed} for Q1 through Q4 of {year}. "
        f"What was its average quarterly {item}, in millions of dollars?",
        mean,
        "The average is the total of the four quarters divided by 4. The total is "
        f"{' + '.join(num(q, 1) for q in quarters)} = {num(total, 1)} million, and "
        f"{num(total, 1)} / 4 = {num(mean)}.",
    )


@register("difference")
def difference(rng: random.Random) -> Problem:
    """Change in a line item between two years, signed."""
    company, year = company_name(rng), fiscal_year(rng)
    item = rng.choice(
        ("cash and equivalents", "long-term debt", "inventory", "accounts receivable")
    )
    old = millions(rng, 20, 30000)
    new = round(old * rng.uniform(0.75, 1.3), 1)
    change = round(new - old, 1)
    direction = "an increase" if change >= 0 else "a decrease"
    return Problem(
        f"{possessive(company)} {item} was {usd_m(old)} at the end of {year} and {usd_m(new)} "
        "at the end of "
        f"{year + 1}. By how many millions of dollars did it change ({year + 1} minus {year})?",
        change,
        f"The change is the {year + 1} balance minus the {year} balance: "
        f"{num(new, 1)} - {num(old, 1)} = {num(change, 1)} million, {direction} in {item}.",
    )
