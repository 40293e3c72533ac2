"""The web console over a running network, in headless Chromium and through its API.

One network of real processes for the module (``live``); the tests run in order: a wrong
key password, unlocking, a malformed and an over-budget query (each refused with a clear
message, nothing spent), an SQL query and a Kaplan–Meier curve quoted, run and checked
against the Python API's own result object, the query's audit trail against the chain, and
a rating. Screenshots of each view go to ``artifacts`` (their paths are printed)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tessera.data import medical
from tessera.web.app import create_app

from .conftest import Live

SQL = "SELECT COUNT(*) AS n, AVG(age) AS mean_age FROM patients"
EDGES = "0,365,730,1095,1460,1826"
WAIT = 180.0  # seconds a query may take on the shared 2-core machine


def truth() -> pd.DataFrame:
    return pd.concat([medical.load(p) for p in medical.PROVIDERS], ignore_index=True)


# -- helpers ------------------------------------------------------------------------------
def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    """``check()`` once it is truthy; an element the page re-rendered while it was read
    (stale) counts as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except StaleElementReferenceException:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def by_id(driver: Any, id_: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, id_)


def visible_text(driver: Any, id_: str) -> str:
    e = by_id(driver, id_)
    return str(e.text) if e.is_displayed() else ""


def typed(driver: Any, id_: str, text: str) -> None:
    e = by_id(driver, id_)
    e.clear()
    e.send_keys(text)


def choose(driver: Any, id_: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(by_id(driver, id_)).select_by_value(value)


def shot(driver: Any, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def submitted(live: Any) -> int:
    return int(live.console.reader.stats().submitted_queries)


def budgets(live: Any) -> dict[int, int]:
    r = live.console.reader
    return {i: r.dataset(i).budget_remaining for i in range(r.dataset_count())}


def run_in_page(driver: Any, live: Any) -> Any:
    """Quote, accept, run; wait for the job; the console's job (with its QueryResult)."""
    by_id(driver, "quote-btn").click()
    wait_for(
        "the quote", lambda: visible_text(driver, "quote") or visible_text(driver, "query-error")
    )
    assert not visible_text(driver, "query-error"), visible_text(driver, "query-error")
    price = int(by_id(driver, "quote-price").text)
    before = len(live.console.jobs)
    wait_for("the run button", lambda: by_id(driver, "run-btn").is_enabled())
    by_id(driver, "run-btn").click()
    wait_for("the job", lambda: len(live.console.jobs) > before)
    job = list(live.console.jobs.values())[-1]
    wait_for("the query to finish", lambda: job.status != "running", timeout=WAIT)
    status = wait_for(
        "the page to show it",
        lambda: (
            by_id(driver, "job-status").get_attribute("data-status") == job.status and job.status
        ),
    )
    assert status == "done", f"{job.error_kind}: {job.error}"
    assert job.quote["price"] == price
    wait_for("the chart", lambda: driver.execute_script("return window.tessera.view !== null"))
    # the progress the page showed is the analyst's own progress
    shown = [li.text for li in by_id(driver, "progress").find_elements("tag name", "li")]
    assert any("submitting the query to the ledger" in s for s in shown)
    assert any("key switching" in s for s in shown)
    return job


def block_time(reader: Any, block: int) -> str:
    """A block's timestamp as the chain gives it, in ISO 8601 UTC."""
    from datetime import UTC, datetime

    stamp = int(reader.market.w3.eth.get_block(block)["timestamp"])
    return datetime.fromtimestamp(stamp, tz=UTC).isoformat(timespec="seconds")


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.fixture(autouse=True)
def unlocked_page(request: pytest.FixtureRequest, live: Any, browser: Any) -> None:
    """Every test but the locked-console one starts from the analyst page of the shared
    console, unlocked: no test depends on another having run before it, or on the same
    worker."""
    if request.node.name.startswith("test_a_wrong_key_password"):
        return
    if not live.console.unlocked:
        live.console.unlock(live.net.password)
    if not browser.current_url.startswith(live.url) or not browser.find_elements("id", "sql"):
        browser.get(live.url + "/")
        wait_for(
            "the page",
            lambda: browser.find_element("tag name", "body").get_attribute("data-ready"),
        )
    wait_for(
        "the unlocked page",
        lambda: by_id(browser, "account").get_attribute("data-unlocked") == "yes",
    )


def _open_listing(browser: Any, dataset: int) -> bool:
    """Click the catalog row of ``dataset``; False if the table was redrawn under us (the
    page renders the search results again as they come: a stale row is looked up anew)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        rows = by_id(browser, "datasets").find_elements("css selector", "tbody tr")
        row = next(r for r in rows if int(r.get_attribute("data-dataset")) == dataset)
        row.find_element("tag name", "a").click()
    except (StaleElementReferenceException, StopIteration):
        return False
    return True


def a_job(live: Any, browser: Any) -> Any:
    """The console's first query, run through the page if there is none yet."""
    if not live.console.jobs:
        choose(browser, "kind", "sql")
        typed(browser, "sql", SQL)
        typed(browser, "epsilon", "1")
        run_in_page(browser, live)
    return next(iter(live.console.jobs.values()))


# -- tests ---------------------------------------------------------------------------------
def test_a_wrong_key_password_is_refused_and_the_console_stays_locked(
    live: Any, browser: Any, artifacts: Path
) -> None:
    from tessera.web.console import Console
    from tessera.web.server import ThreadedServer

    console = Console(live.net.dir)  # a console of its own, locked, over the same network
    server = ThreadedServer(console).start()
    try:
        _wrong_then_right_password(Live(live.net, console, server), browser)
    finally:
        server.stop()
        console.close()


def _wrong_then_right_password(live: Any, browser: Any) -> None:
    browser.get(live.url + "/")
    wait_for(
        "the page", lambda: browser.find_element("tag name", "body").get_attribute("data-ready")
    )
    assert by_id(browser, "account").get_attribute("data-unlocked") == "no"
    typed(browser, "password", "not-the-password")
    by_id(browser, "unlock-btn").click()
    msg = wait_for(
        "the refusal",
        lambda: (
            "error" in by_id(browser, "unlock-msg").get_attribute("class")
            and by_id(browser, "unlock-msg").text
        ),
    )
    assert "wrong password" in msg
    assert not live.console.unlocked
    assert by_id(browser, "account").get_attribute("data-unlocked") == "no"
    # the right one unlocks it, here in the console's process
    typed(browser, "password", live.net.password)
    by_id(browser, "unlock-btn").click()
    wait_for("unlocking", lambda: by_id(browser, "account").get_attribute("data-unlocked") == "yes")
    assert live.console.unlocked
    # no answer the page got holds the key: the session names the address only
    page = browser.execute_script("return fetch('/api/session').then(r => r.text())")
    key = live.console.analyst.ledger._signer.key.hex()
    assert key.removeprefix("0x") not in page and live.console.address in page


def test_malformed_sql_shows_a_clear_message_and_spends_nothing(
    live: Any, browser: Any, artifacts: Path
) -> None:
    before, spent, jobs = submitted(live), budgets(live), len(live.console.jobs)
    choose(browser, "kind", "sql")
    typed(browser, "sql", "SELEKT COUNT(*) FROM patients")
    by_id(browser, "quote-btn").click()
    msg = wait_for("the error", lambda: visible_text(browser, "query-error"))
    assert "cannot parse SQL" in msg and "\x1b" not in msg
    assert not by_id(browser, "run-btn").is_enabled()
    typed(browser, "sql", "SELECT AVG(no_such_column) FROM patients")
    by_id(browser, "quote-btn").click()
    msg = wait_for(
        "the error",
        lambda: (
            "no_such_column" in visible_text(browser, "query-error")
            and visible_text(browser, "query-error")
        ),
    )
    assert "no_such_column" in msg
    shot(browser, artifacts, "analyst-malformed-sql")
    assert submitted(live) == before and budgets(live) == spent and len(live.console.jobs) == jobs


def test_an_over_budget_query_is_refused_before_the_ledger(
    live: Any, browser: Any, artifacts: Path
) -> None:
    before, spent, jobs = submitted(live), budgets(live), len(live.console.jobs)
    typed(browser, "sql", SQL)
    typed(browser, "epsilon", "1000")
    by_id(browser, "quote-btn").click()
    msg = wait_for("the refusal", lambda: visible_text(browser, "query-error"))
    assert "over budget" in msg and "µρ left" in msg
    assert not by_id(browser, "run-btn").is_enabled()
    shot(browser, artifacts, "analyst-over-budget")
    assert submitted(live) == before and budgets(live) == spent and len(live.console.jobs) == jobs


def test_an_sql_query_quoted_and_run_shows_the_python_apis_numbers(
    live: Any, browser: Any, artifacts: Path
) -> None:
    before, earlier = submitted(live), len(live.console.jobs)
    choose(browser, "kind", "sql")
    typed(browser, "sql", SQL)
    typed(browser, "epsilon", "1")
    job = run_in_page(browser, live)
    res = job.result  # the QueryResult the analyst's Python API returned for this run
    assert res.verified and submitted(live) == before + 1
    # the quote: the ledger's price of the query's datasets, the query's ε
    ids = [d["dataset_id"] for d in job.quote["datasets"]]
    assert job.quote["price"] == live.console.reader.quote(ids) and len(ids) == 4
    assert job.quote["epsilon"] == 1.0 and math.isclose(res.privacy_cost.epsilon, 1.0, rel_tol=1e-6)
    # the table on the page: each released value and its interval, as the Python API has them
    rows = {}
    for tr in by_id(browser, "result-table").find_elements("css selector", "tbody tr"):
        cells = tr.find_elements("tag name", "td")
        rows[cells[0].text] = float(cells[2].get_attribute("data-value"))
    df = res.to_pandas()
    assert set(rows) == set(res.values) and len(rows) == 2
    for label, value in res.values.items():
        assert close(rows[label], float(value)), (label, rows[label], value)
    # the chart's own data (read back from the Vega view) is the same numbers and intervals
    data = browser.execute_script("return window.tessera.view.data('values')")
    assert len(data) == 2
    for point in data:
        label = point["label"]
        assert close(point["value"], float(res.values[label]))
        lo, hi = res.intervals[label]
        assert close(point["lo"], lo) and close(point["hi"], hi)
    # and those numbers are the data's: within the noise of the plaintext truth
    t = truth()
    n_label = next(k for k in res.values if "count" in k.lower() or k == "n")
    assert abs(float(res.values[n_label]) - len(t)) < 6 * max(res.noise_sd.values()) + 5
    assert df.shape[0] >= 1
    assert by_id(browser, "result-verified").text == "yes"
    history = by_id(browser, "history").find_elements("css selector", "tbody tr")
    assert len(history) == earlier + 1 and any(SQL in row.text for row in history)
    shot(browser, artifacts, "analyst-sql-result")


def test_a_kaplan_meier_curve_is_drawn_with_its_band(
    live: Any, browser: Any, artifacts: Path
) -> None:
    choose(browser, "kind", "kaplan_meier")
    typed(browser, "km-edges", EDGES)
    typed(browser, "epsilon", "1")
    job = run_in_page(browser, live)
    curve = job.result.value["curve"]
    data = browser.execute_script("return window.tessera.view.data('values')")
    assert data[0]["time"] == 0 and data[0]["survival"] == 1
    assert len(data) == len(curve) + 1 == 6
    for point, p in zip(data[1:], curve, strict=True):
        assert close(point["time"], p["time"]) and close(point["survival"], p["survival"])
        assert close(point["lo"], p["ci95_low"]) and close(point["hi"], p["ci95_high"])
        assert point["lo"] <= point["survival"] <= point["hi"]
    # the table: the survival at each time point, as released
    shown = {}
    for tr in by_id(browser, "result-table").find_elements("css selector", "tbody tr"):
        cells = tr.find_elements("tag name", "td")
        shown[cells[1].text] = float(cells[2].get_attribute("data-value"))
    for p in curve:
        assert close(shown[f"S({p['time']:g})"], p["survival"])
    assert close(shown["n"], job.result.value["n"])
    # the band is drawn: an area mark and a line mark in the SVG
    svg = by_id(browser, "chart").get_attribute("innerHTML")
    assert "mark-area" in svg and "mark-line" in svg
    # the released curve is the bundled data's, within its noise
    t = truth()
    one_year = 1 - ((t.followup_days < 365) & (t.event == 1)).sum() / len(t)
    assert abs(curve[0]["survival"] - one_year) < 0.05
    shot(browser, artifacts, "analyst-kaplan-meier")


def test_a_histogram_is_drawn_as_bars_of_the_released_counts(
    live: Any, browser: Any, artifacts: Path
) -> None:
    choose(browser, "kind", "histogram")
    typed(browser, "hist-column", "age")
    typed(browser, "hist-bins", "7")
    typed(browser, "epsilon", "1")
    job = run_in_page(browser, live)
    res = job.result
    (label,) = res.values
    counts, intervals = res.values[label], res.intervals[label]
    edges = job.request.edges
    assert len(counts) == 7 and len(edges) == 8
    data = browser.execute_script("return window.tessera.view.data('values')")
    assert len(data) == 7
    for i, point in enumerate(data):
        assert close(point["bin_lo"], edges[i]) and close(point["bin_hi"], edges[i + 1])
        assert close(point["value"], counts[i])
        assert close(point["lo"], intervals[i][0]) and close(point["hi"], intervals[i][1])
    t = truth()
    true_counts = pd.cut(t.age, list(edges), right=False, include_lowest=True).value_counts(
        sort=False
    )
    # the released counts are the data's within the noise (the last bin closed at the top)
    assert abs(sum(counts) - len(t)) < 7 * (6 * max(res.noise_sd.values()) + 5)
    assert abs(counts[0] - int(true_counts.iloc[0])) < 6 * max(res.noise_sd.values()) + 5
    assert "mark-rect" in by_id(browser, "chart").get_attribute("innerHTML")
    shot(browser, artifacts, "analyst-histogram")


def test_the_audit_trail_of_the_query_is_the_chains(
    live: Any, browser: Any, artifacts: Path
) -> None:
    job = a_job(live, browser)
    qid = job.payload["query_id"]
    browser.get(live.url + "/#analyst")
    wait_for(
        "the history", lambda: by_id(browser, "history").find_elements("css selector", "tbody a")
    )
    links = by_id(browser, "history").find_elements("css selector", "tbody a")
    links[-1].click()  # the oldest: the SQL query
    wait_for("the trail", lambda: visible_text(browser, "trail-status"))
    assert by_id(browser, "trail-qid").get_attribute("value") == qid
    reader = live.console.reader
    q, trail = reader.query(qid), reader.audit_trail(qid)
    assert by_id(browser, "trail-query-status").text == q.status == "passed"
    items = by_id(browser, "trail-timeline").find_elements("tag name", "li")
    on_chain = sorted((k, a) for k, by in trail.commitments.items() for a in by)
    shown = sorted(
        (
            li.find_element("class name", "kind").text,
            li.find_element("class name", "author").get_attribute("title"),
        )
        for li in items
    )
    assert shown == on_chain and len(items) >= 4 + 3
    blocks = [int(li.find_element("class name", "block").text.split()[1]) for li in items]
    assert blocks == sorted(blocks) and blocks[0] >= q.submitted_block
    assert "pass" in by_id(browser, "trail-verdicts").text
    assert "nobody slashed" in by_id(browser, "trail-slashing").text
    # participants with their stake and reputation, as the registry has them
    rows = wait_for(
        "participants",
        lambda: by_id(browser, "participants").find_elements("css selector", "tbody tr"),
    )
    assert len(rows) == 1 + 4 + 3 + 1
    for tr in rows:
        cells = tr.find_elements("tag name", "td")
        p = reader.participant(cells[1].text)
        assert int(cells[3].text) == p.stake and int(cells[4].text) == p.reputation
    # a malformed id: a clear message
    typed(browser, "trail-qid", "0x1234")
    by_id(browser, "trail-btn").click()
    assert "64 hex digits" in wait_for("the error", lambda: visible_text(browser, "trail-error"))
    typed(browser, "trail-qid", qid)
    by_id(browser, "trail-btn").click()
    wait_for("the trail again", lambda: visible_text(browser, "trail-status"))
    shot(browser, artifacts, "ledger-audit-trail")


def test_the_market_searches_shows_a_listing_and_rates_a_dataset(
    live: Any, browser: Any, artifacts: Path
) -> None:
    job = a_job(live, browser)
    qid = job.payload["query_id"]
    reader = live.console.reader
    dataset = reader.query(qid).dataset_ids[0]
    browser.get(live.url + "/#market")
    typed(browser, "tag", "health")
    by_id(browser, "search-btn").click()
    rows = wait_for(
        "the catalog", lambda: by_id(browser, "datasets").find_elements("css selector", "tbody tr")
    )
    assert sorted(int(r.get_attribute("data-dataset")) for r in rows) == sorted(
        reader.search("health")
    )
    wait_for("the listing's link", lambda: _open_listing(browser, dataset))
    listing = wait_for("the listing", lambda: visible_text(browser, "listing"))
    ds = reader.dataset(dataset)
    assert f"{ds.budget_remaining:,} of {ds.budget_cap:,}" in listing
    assert str(ds.price_per_query) in listing and "minimum cohort" in listing
    # a malformed query id: a clear message, no rating
    count = ds.rating_count
    typed(browser, "rate-qid", "not-a-query")
    by_id(browser, "rate-btn").click()
    msg = wait_for(
        "the refusal",
        lambda: (
            "error" in by_id(browser, "rate-msg").get_attribute("class")
            and by_id(browser, "rate-msg").text
        ),
    )
    assert "query_id" in msg
    assert reader.dataset(dataset).rating_count == count
    # the query's own dataset, 4 stars
    typed(browser, "rate-qid", qid)
    typed(browser, "rate-dataset", str(dataset))
    choose(browser, "rate-stars", "4")
    by_id(browser, "rate-btn").click()
    wait_for("the rating", lambda: "rated dataset" in by_id(browser, "rate-msg").text)
    after = reader.dataset(dataset)
    assert after.rating_count == count + 1 and after.rating == 4.0
    wait_for("the catalog's rating", lambda: "4.00 (1)" in by_id(browser, "datasets").text)
    shot(browser, artifacts, "market")
    # rating again replaces this analyst's stars (the market counts each analyst once)
    choose(browser, "rate-stars", "2")
    by_id(browser, "rate-btn").click()
    wait_for("the new rating", lambda: "2★" in by_id(browser, "rate-msg").text)
    again = reader.dataset(dataset)
    assert again.rating_count == count + 1 and again.rating == 2.0
    # a query that is not this analyst's: the market's refusal, shown, nothing changed
    typed(browser, "rate-qid", "0x" + "ab" * 32)
    by_id(browser, "rate-btn").click()
    msg = wait_for(
        "the refusal",
        lambda: (
            "error" in by_id(browser, "rate-msg").get_attribute("class")
            and by_id(browser, "rate-msg").text
        ),
    )
    assert "not the query's analyst" in msg
    assert reader.dataset(dataset).rating_sum == again.rating_sum


# -- the API without the browser, on the same network ---------------------------------------
def test_the_api_refuses_without_a_csrf_token_and_validates_every_input(live: Any) -> None:
    client = TestClient(create_app(live.console), base_url="http://127.0.0.1")
    before, spent, jobs = submitted(live), budgets(live), len(live.console.jobs)
    body = {"sql": SQL, "epsilon": 1, "accepted_price": 400}
    # no session, no token, a wrong token, a foreign origin: refused before anything runs
    r = client.post("/api/run", json=body)
    assert r.status_code == 403 and "session" in r.json()["error"]
    token = client.get("/api/session").json()["csrf_token"]
    r = client.post("/api/run", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post("/api/run", json=body, headers={"X-CSRF-Token": "x" + token})
    assert r.status_code == 403
    h = {"X-CSRF-Token": token}
    r = client.post("/api/run", json=body, headers={**h, "Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    r = client.post("/api/run", json=body, headers={**h, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = client.post(
        "/api/run",
        content="sql=x",
        headers={**h, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 403 and "JSON" in r.json()["error"]
    # validation: one clear message each, a 4xx
    for bad, code, words in [
        ({**body, "epsilon": -1}, 422, "epsilon"),
        ({**body, "epsilon": "lots"}, 422, "epsilon"),
        ({**body, "sql": "SELEKT 1 FROM patients"}, 400, "SQL"),
        ({**body, "sql": ""}, 400, "SQL"),
        ({**body, "epsilon": 1000}, 409, "over budget"),
        ({**body, "accepted_price": 1}, 409, "price is now"),
        ({**body, "kind": "histogram", "table": "patients", "column": "nope"}, 400, "nope"),
        (
            {
                **body,
                "kind": "kaplan_meier",
                "table": "patients",
                "time_column": "followup_days",
                "event_column": "event",
                "edges": [5, 1],
            },
            400,
            "increasing",
        ),
        ({**body, "table": "x; DROP"}, 422, "table"),
    ]:
        r = client.post("/api/run", json=bad, headers=h)
        assert r.status_code == code, (bad, r.status_code, r.text)
        assert words in r.json()["error"], (bad, r.json())
    r = client.post("/api/unlock", json={"password": "wrong"}, headers=h)
    assert r.status_code == 403 and "wrong password" in r.json()["error"]
    r = client.post(
        "/api/market/rate",
        json={"query_id": "0x" + "00" * 32, "dataset_id": 0, "stars": 9},
        headers=h,
    )
    assert r.status_code == 422 and "stars" in r.json()["error"]
    r = client.get("/api/queries/0x" + "ab" * 32)
    assert r.status_code == 404
    r = client.get("/api/market/datasets/999")
    assert r.status_code == 404
    # the next slice's inputs: the same clear 4xx, nothing run
    reg = {**body, "kind": "regression", "table": "patients", "y": "sbp", "x": ["age"]}
    train = {"features": ["age"], "label": "diabetes", "rounds": 1, "epsilon": 1}
    for method, path, bad, code, words in [
        ("post", "/api/run", {**reg, "y": ""}, 400, "outcome"),
        ("post", "/api/run", {**reg, "x": ["age; DROP"]}, 422, "x"),
        ("post", "/api/run", {**reg, "x": ["nope"]}, 400, "nope"),
        ("post", "/api/run", {**body, "datasets": [999]}, 404, "dataset 999"),
        ("post", "/api/run", {**body, "datasets": [-1]}, 422, "datasets"),
        ("post", "/api/verify", {"query_id": "0x12"}, 422, "query_id"),
        ("post", "/api/verify", {"query_id": "0x" + "ab" * 32}, 404, "no query"),
        ("post", "/api/train", {**train, "rounds": 0, "accepted_price": 0}, 422, "rounds"),
        ("post", "/api/train", {**train, "label": "age", "accepted_price": 0}, 400, "label"),
        ("post", "/api/train", {**train, "accepted_price": 1}, 409, "price is now"),
        ("get", "/api/providers/nobody", None, 404, "no provider"),
        ("get", "/api/trainings/0x12", None, 400, "32 bytes"),
        ("get", "/api/trainings/0x" + "00" * 32, None, 404, "no training"),
    ]:
        r = client.post(path, json=bad, headers=h) if method == "post" else client.get(path)
        assert r.status_code == code, (path, bad, r.status_code, r.text)
        assert words in r.json()["error"], (path, bad, r.json())
    assert submitted(live) == before and budgets(live) == spent and len(live.console.jobs) == jobs


# -- the next slice: buying, regression, providers, trends, events, telemetry ---------------
def chart_data(browser: Any, key: str) -> Any:
    """The data a chart of the page draws, read back from its Vega view."""
    return browser.execute_script(f"return window.tessera.charts['{key}'].data('values')")


def _settlement(live: Any, qid: str) -> Any:
    """The chain's own ``QuerySettled`` event of a query (read here, not by the console)."""
    from tessera.ledger.client import query_id_bytes

    logs = live.console.reader.market.events.QuerySettled().get_logs(
        from_block=0, argument_filters={"query_id": query_id_bytes(qid)}
    )
    assert len(logs) == 1, logs
    return logs[0]["args"]


def test_the_market_buys_and_rates_a_dataset(live: Any, browser: Any, artifacts: Path) -> None:
    reader = live.console.reader
    dataset = reader.search("health")[-1]
    before = reader.dataset(dataset)
    browser.get(live.url + "/#market")
    by_id(browser, "search-btn").click()
    wait_for("the listing's link", lambda: _open_listing(browser, dataset))
    # the listing clicked (an earlier test's may still be shown until it is drawn)
    wait_for("the buy form", lambda: f"dataset {dataset} " in visible_text(browser, "buy-title"))
    assert f"{before.price_per_query} credits" in by_id(browser, "buy-title").text
    typed(browser, "buy-sql", SQL)
    typed(browser, "buy-epsilon", "0.5")
    by_id(browser, "buy-quote-btn").click()
    wait_for("the quote", lambda: visible_text(browser, "buy-quote"))
    # the price is the listing's alone (one dataset), the ε the one asked
    price = int(by_id(browser, "buy-price").text)
    assert price == reader.quote([dataset]) == before.price_per_query
    assert float(by_id(browser, "buy-eps").text) == 0.5
    jobs = len(live.console.jobs)
    wait_for("the buy button", lambda: by_id(browser, "buy-btn").is_enabled())
    by_id(browser, "buy-btn").click()
    wait_for("the job", lambda: len(live.console.jobs) > jobs)
    job = list(live.console.jobs.values())[-1]
    wait_for("the purchase", lambda: job.status != "running", timeout=WAIT)
    assert job.status == "done", f"{job.error_kind}: {job.error}"
    res = job.result
    qid = "0x" + res.query_id
    assert res.verified and list(res.providers) == [live.console.name_of(before.provider)]
    q = reader.query(qid)
    assert q.dataset_ids == (dataset,) and q.price == before.price_per_query
    assert q.status == "passed"
    # the page's numbers are the Python API's
    wait_for("the result", lambda: visible_text(browser, "buy-payment"))
    shown = {}
    for tr in by_id(browser, "buy-result").find_elements("css selector", "tbody tr"):
        cells = tr.find_elements("tag name", "td")
        shown[cells[0].text] = float(cells[2].get_attribute("data-value"))
    assert set(shown) == set(res.values)
    for label, value in res.values.items():
        assert close(shown[label], float(value))
    # the ledger shows the payment: the chain's settlement of this query
    paid = by_id(browser, "buy-paid")
    s = _settlement(live, qid)
    assert int(paid.get_attribute("data-paid")) == int(s["paid"]) > 0
    assert int(paid.get_attribute("data-refunded")) == int(s["refunded"])
    assert int(s["paid"]) + int(s["refunded"]) == q.price
    after = reader.dataset(dataset)
    assert after.queries == before.queries + 1 and after.revenue > before.revenue
    assert after.budget_remaining == before.budget_remaining - q.privacy_cost
    # and rates it
    typed(browser, "rate-qid", qid)
    typed(browser, "rate-dataset", str(dataset))
    choose(browser, "rate-stars", "5")
    by_id(browser, "rate-btn").click()
    wait_for("the rating", lambda: "rated dataset" in by_id(browser, "rate-msg").text)
    assert reader.dataset(dataset).rating_count == before.rating_count + 1
    shot(browser, artifacts, "market-buy")


def test_a_kaplan_meier_curve_is_bought_from_one_listing_and_drawn(
    live: Any, browser: Any, artifacts: Path
) -> None:
    """From a listing, "Another analysis…" opens the analyst view restricted to it: a
    Kaplan–Meier curve of that dataset alone, at its listing's price, drawn with its band
    and equal to the Python API's result; the curve is that provider's own data's."""
    reader = live.console.reader
    dataset = reader.search("health")[0]
    before = reader.dataset(dataset)
    provider = live.console.name_of(before.provider)
    browser.get(live.url + "/#market")
    by_id(browser, "search-btn").click()
    wait_for("the listing's link", lambda: _open_listing(browser, dataset))
    wait_for("the buy form", lambda: f"dataset {dataset} " in visible_text(browser, "buy-title"))
    by_id(browser, "buy-analyse-btn").click()
    wait_for("the analyst view", lambda: by_id(browser, "kind").is_displayed())
    try:
        assert by_id(browser, "listings").get_attribute("value") == str(dataset)
        choose(browser, "kind", "kaplan_meier")
        typed(browser, "km-edges", EDGES)
        typed(browser, "epsilon", "1")
        job = run_in_page(browser, live)
        assert job.request.datasets == (dataset,)
        res = job.result
        assert res.verified and list(res.providers) == [provider]
        q = reader.query("0x" + res.query_id)
        assert (
            q.dataset_ids == (dataset,) and q.price == before.price_per_query == job.quote["price"]
        )
        curve = res.value["curve"]
        data = browser.execute_script("return window.tessera.view.data('values')")
        for point, c in zip(data[1:], curve, strict=True):
            assert close(point["survival"], c["survival"]) and close(point["lo"], c["ci95_low"])
        # that provider's patients alone: its one-year survival, within the noise
        mine = medical.load(provider)
        one_year = 1 - ((mine.followup_days < 365) & (mine.event == 1)).sum() / len(mine)
        assert abs(curve[0]["survival"] - one_year) < 0.08
        assert reader.dataset(dataset).queries == before.queries + 1
        shot(browser, artifacts, "market-buy-kaplan-meier")
    finally:
        typed(browser, "listings", "")  # the next analyses ask every holder again


def _ols(df: pd.DataFrame, y: str, x: list[str]) -> dict[str, float]:
    import numpy as np

    a = np.column_stack([np.ones(len(df)), df[x].to_numpy(dtype=float)])
    beta = np.linalg.lstsq(a, df[y].to_numpy(dtype=float), rcond=None)[0]
    return dict(zip(["intercept", *x], beta.tolist(), strict=True))


def test_a_linear_regression_is_plotted_with_its_confidence_intervals(
    live: Any, browser: Any, artifacts: Path
) -> None:
    browser.get(live.url + "/#analyst")
    wait_for("the analyst view", lambda: by_id(browser, "kind").is_displayed())
    choose(browser, "kind", "regression")
    typed(browser, "reg-y", "sbp")
    typed(browser, "reg-x", "age,bmi")
    typed(browser, "epsilon", "2")
    job = run_in_page(browser, live)
    model = job.result.value  # the LinearModel the Python API returned
    (label,) = job.result.values
    noise = job.result.intervals[label]["coefficients"]
    coefs, se = model["coefficients"], model["std_errors"]
    data = browser.execute_script("return window.tessera.view.data('values')")
    assert [p["name"] for p in data] == ["intercept", "age", "bmi"] == list(coefs)
    for p in data:
        name = p["name"]
        assert close(p["value"], coefs[name]) and close(p["std_error"], se[name])
        assert close(p["lo"], coefs[name] - 1.96 * se[name])
        assert close(p["hi"], coefs[name] + 1.96 * se[name])
        assert close(p["noise_lo"], noise[name][0]) and close(p["noise_hi"], noise[name][1])
    # the fit is the data's: each slope near the plaintext OLS (its CI and the noise)
    truth_fit = _ols(truth(), "sbp", ["age", "bmi"])
    for name in ("age", "bmi"):
        slack = 4 * se[name] + (noise[name][1] - noise[name][0])
        assert abs(coefs[name] - truth_fit[name]) < slack, (name, coefs[name], truth_fit[name])
    svg = by_id(browser, "chart").get_attribute("innerHTML")
    assert "mark-rule" in svg and "mark-symbol" in svg
    shot(browser, artifacts, "analyst-regression")


def test_the_provider_view_shows_budget_revenue_and_who_queried(
    live: Any, browser: Any, artifacts: Path
) -> None:
    job = a_job(live, browser)
    reader = live.console.reader
    dataset = reader.query(job.payload["query_id"]).dataset_ids[0]
    ds = reader.dataset(dataset)
    name = live.console.name_of(ds.provider)
    browser.get(live.url + "/#provider")
    wait_for(
        "the providers", lambda: by_id(browser, "provider-name").find_elements("tag name", "option")
    )
    choose(browser, "provider-name", name)
    by_id(browser, "provider-btn").click()
    wait_for(
        "the provider",
        lambda: (
            name in visible_text(browser, "provider-meta")
            and browser.execute_script("return window.tessera.charts['provider-revenue'] != null")
        ),
    )
    ds = reader.dataset(dataset)  # after the page read it (no query runs meanwhile)
    row = by_id(browser, "provider-datasets").find_element(
        "css selector", f"tr[data-dataset='{dataset}']"
    )
    assert int(row.find_element("class name", "budget").text) == ds.budget_remaining
    assert int(row.find_element("class name", "revenue").text) == ds.revenue
    assert ", ".join(sorted(ds.operations)) in row.text
    # who queried what: every query naming this dataset, from the chain's submissions
    ev = reader.market.events.QuerySubmitted().get_logs(from_block=0)
    mine = [
        "0x" + bytes(e["args"]["query_id"]).hex()
        for e in ev
        if dataset in reader.query(bytes(e["args"]["query_id"])).dataset_ids
    ]
    rows = by_id(browser, "provider-queries").find_elements("css selector", "tbody tr")
    assert [r.get_attribute("data-query") for r in rows] == mine and mine
    # the charts: budget left and revenue at each block, ending at the ledger's values now,
    # the budget spent being the privacy cost of the queries shown
    budget = chart_data(browser, "provider-budget")
    series = [p for p in budget if p["dataset"] == f"dataset {dataset}"]
    blocks = [p["block"] for p in series]
    assert blocks == sorted(blocks) and series[0]["budget_remaining"] == ds.budget_cap
    assert series[-1]["budget_remaining"] == ds.budget_remaining
    assert series[-1]["revenue"] == ds.revenue
    spent = sum(reader.query(q).privacy_cost for q in mine if reader.query(q).status == "passed")
    assert ds.budget_cap - ds.budget_remaining == spent
    for p in series:
        listings = getattr(reader, "catalog", None) or reader.market
        raw = listings.functions.dataset(dataset).call(block_identifier=p["block"])
        assert p["budget_remaining"] == int(raw[6]) - int(raw[7]) and p["revenue"] == int(raw[14])
        assert p["time"] == block_time(reader, p["block"])  # drawn on the time axis
    shot(browser, artifacts, "provider")


def test_market_trends_chart_queries_over_time_and_top_datasets(
    live: Any, browser: Any, artifacts: Path
) -> None:
    a_job(live, browser)
    reader = live.console.reader
    browser.get(live.url + "/#market")
    browser.refresh()  # a page of its own: no chart left from an earlier visit
    wait_for(
        "the trends",
        lambda: browser.execute_script("return window.tessera.charts['trends-top'] != null"),
    )
    queries, top = chart_data(browser, "trends-queries"), chart_data(browser, "trends-top")
    ev = reader.market.events.QuerySubmitted().get_logs(from_block=0)
    per_block: dict[int, int] = {}
    for e in ev:
        per_block[int(e["blockNumber"])] = per_block.get(int(e["blockNumber"]), 0) + 1
    assert [(p["block"], p["queries"]) for p in queries] == sorted(per_block.items())
    assert [p["time"] for p in queries] == [block_time(reader, b) for b in sorted(per_block)]
    axis = browser.execute_script(
        "return window.tessera.charts['trends-queries'].scale('x').type"
    )  # the chart's x axis is time, not block numbers
    assert axis in ("time", "utc"), axis
    assert queries[-1]["total"] == reader.stats().submitted_queries == len(ev)
    assert [p["dataset_id"] for p in top] == reader.top_datasets(10)
    for p in top:
        d = reader.dataset(p["dataset_id"])
        assert (p["revenue"], p["buyers"], p["queries"]) == (d.revenue, d.buyers, d.queries)
    by_id(browser, "trends-queries").location_once_scrolled_into_view  # noqa: B018
    shot(browser, artifacts, "market-trends")


def test_the_explorer_lists_verdicts_and_slashing_and_rechecks_a_query(
    live: Any, browser: Any, artifacts: Path
) -> None:
    job = a_job(live, browser)
    qid = job.payload["query_id"]
    reader = live.console.reader
    browser.get(live.url + "/#ledger")
    typed(browser, "trail-qid", qid)
    by_id(browser, "trail-btn").click()
    wait_for("the trail", lambda: visible_text(browser, "trail-status"))
    by_id(browser, "verify-btn").click()
    state = wait_for(
        "the re-check",
        lambda: (
            by_id(browser, "verify-result").get_attribute("data-state") not in (None, "running")
            and by_id(browser, "verify-result").get_attribute("data-state")
        ),
        timeout=WAIT,
    )
    assert state == "passed", by_id(browser, "verify-result").text
    assert "proofs checked" in by_id(browser, "verify-result").text
    # the tables of verdicts and settlements are the chain's events
    ev = reader.market.events
    verdicts = ev.VerdictPosted().get_logs(from_block=0)
    settled = ev.QuerySettled().get_logs(from_block=0)
    slashed = reader.registry.events.Slashed().get_logs(from_block=0)
    wait_for(
        "the events",
        lambda: (
            len(by_id(browser, "events-verdicts").find_elements("css selector", "tbody tr"))
            == len(verdicts)
        ),
    )
    rows = by_id(browser, "events-settlements").find_elements("css selector", "tbody tr")
    by_qid = {"0x" + bytes(s["args"]["query_id"]).hex(): s["args"] for s in settled}
    assert {r.get_attribute("data-query") for r in rows} == set(by_qid)
    for r in rows:
        cells = r.find_elements("tag name", "td")
        s = by_qid[r.get_attribute("data-query")]
        assert int(cells[4].text) == int(s["paid"]) and int(cells[6].text) == int(s["slashed"])
    assert not slashed and "nobody slashed" in by_id(browser, "events-slashes").text
    # the committees: the network's, as the registry holds it, its members by name
    c = reader.committee(live.console.state["committee"])
    row = wait_for(
        "the committees",
        lambda: by_id(browser, "committees").find_elements(
            "css selector", f"tr[data-committee='{c.committee_id}']"
        ),
    )[0]
    shown = browser.execute_script("return window.tessera.committees")
    (mine,) = [x for x in shown if x["committee_id"] == c.committee_id]
    assert mine["threshold"] == c.threshold and mine["public_key"] == "0x" + c.public_key.hex()
    assert [m["address"] for m in mine["members"]] == list(c.members)
    for m in mine["members"]:
        p = reader.participant(m["address"])
        assert (m["stake"], m["reputation"]) == (p.stake, p.reputation) and m["name"]
        assert m["name"] in row.text
    assert f"{c.threshold} of {len(c.members)}" in row.text and mine["origin"] == "endorsed"
    shot(browser, artifacts, "ledger-events-verify")
    # a malformed id: refused with the field named, nothing run
    typed(browser, "trail-qid", "0x12")
    by_id(browser, "verify-btn").click()
    msg = wait_for(
        "the refusal",
        lambda: (
            by_id(browser, "verify-result").get_attribute("data-state") == "error"
            and by_id(browser, "verify-result").text
        ),
    )
    assert "query_id" in msg


def test_the_telemetry_view_says_this_network_has_no_task(
    live: Any, browser: Any, artifacts: Path
) -> None:
    browser.get(live.url + "/#telemetry")
    msg = wait_for("the empty state", lambda: visible_text(browser, "telemetry-empty"))
    assert "no telemetry task" in msg
    assert not by_id(browser, "telemetry-tasks").is_displayed()
    shot(browser, artifacts, "telemetry-empty")


def test_the_telemetry_view_collects_from_real_aggregators(
    live: Any, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    """Two aggregator processes (``tessera telemetry serve``) run a Poplar1 task and a
    noised histogram task over the ages of scikit-learn's diabetes table (442 patients).
    A console started with both task files shows their aggregators and the leader's counts,
    and collects from the page: the heavy hitters are the ages seen at least 12 times, and
    the histogram on the page and in its chart is the one the collector released (asked
    again, the leader gives the stored release). A misaligned batch is refused on the page
    and releases nothing."""
    from collections import Counter
    from fractions import Fraction

    from sklearn.datasets import load_diabetes

    from tessera.crypto.rng import SeededRng
    from tessera.node.launcher import free_port
    from tessera.node.telemetry.client import TelemetryClient
    from tessera.node.telemetry.collector import TelemetryCollector
    from tessera.node.telemetry.config import load_task_config, write_task
    from tessera.node.telemetry.launcher import aggregators
    from tessera.protocol.telemetry import BatchInterval, DpSpec, VdafSpec
    from tessera.web.console import Console
    from tessera.web.server import ThreadedServer

    ages = [int(a) for a in load_diabetes(as_frame=True, scaled=False).frame["age"]]
    t0 = (int(time.time()) - 86_400) // 3600 * 3600
    ports = [free_port(), free_port()]
    common = {"aggregator_ports": ports, "min_batch_size": 100, "time_precision": 60}
    ages_hh = write_task(
        tmp_path / "ages-hh", VdafSpec.of("Poplar1", bits=8), dp=DpSpec("none"), **common
    )
    decades = write_task(
        tmp_path / "ages-decades",
        VdafSpec.of("Prio3Histogram", length=10, chunk_length=4),
        dp=DpSpec("discrete_gaussian", rho=Fraction(1, 2)),
        **common,
    )
    with aggregators([ages_hh, decades], tmp_path):
        hh_cfg, dec_cfg = load_task_config(ages_hh), load_task_config(decades)
        with TelemetryClient(hh_cfg) as client:
            bits = [tuple(c == "1" for c in format(a, "08b")) for a in ages]
            client.submit(bits, t0, SeededRng(31))
        with TelemetryClient(dec_cfg) as client:
            client.submit([min(a // 10, 9) for a in ages], t0, SeededRng(32))
        console = Console(live.net.dir, telemetry=[ages_hh, decades])
        server = ThreadedServer(console).start()
        try:
            browser.get(server.url + "/#telemetry")
            rows = wait_for(
                "the tasks",
                lambda: by_id(browser, "telemetry-tasks").find_elements("css selector", "tbody tr"),
            )
            assert len(rows) == 2 and all("up" in r.text and "DOWN" not in r.text for r in rows)
            assert all("accepted 442" in r.text for r in rows), [r.text for r in rows]
            shot(browser, artifacts, "telemetry-tasks")

            def collect(task: str, start: int, threshold: int | None = None) -> None:
                wait_for("the form", lambda: by_id(browser, "telemetry-btn").is_enabled())
                choose(browser, "telemetry-task", task)
                typed(browser, "telemetry-start", str(start))
                typed(browser, "telemetry-duration", "60")
                if threshold is not None:
                    typed(browser, "telemetry-threshold", str(threshold))
                browser.execute_script("window.tessera.telemetryResult = null")
                by_id(browser, "telemetry-btn").click()

            # misaligned: refused with the leader's reason, and nothing is released
            collect(dec_cfg.task_id_hex, t0 + 1)
            error = wait_for("the refusal", lambda: visible_text(browser, "telemetry-error"))
            assert "multiple of" in error or "align" in error, error
            assert console.telemetry.collections == []
            shot(browser, artifacts, "telemetry-misaligned")

            collect(hh_cfg.task_id_hex, t0, threshold=12)
            out = wait_for(
                "the heavy hitters",
                lambda: browser.execute_script("return window.tessera.telemetryResult"),
                timeout=WAIT,
            )
            expected = {format(a, "08b"): n for a, n in Counter(ages).items() if n >= 12}
            assert len(expected) >= 3 and out["heavy_hitters"] == expected
            assert out["report_count"] == len(ages)
            drawn = browser.execute_script("return window.tessera.data['telemetry']")
            assert {d["key"]: d["count"] for d in drawn} == expected
            ages_drawn = {a for a, n in Counter(ages).items() if n >= 12}
            assert {d["label"] for d in drawn} == {f"{a:08b} = {a}" for a in ages_drawn}
            shot(browser, artifacts, "telemetry-heavy-hitters")

            collect(dec_cfg.task_id_hex, t0)
            out = wait_for(
                "the histogram",
                lambda: browser.execute_script("return window.tessera.telemetryResult"),
                timeout=WAIT,
            )
            with TelemetryCollector(dec_cfg) as collector:
                stored = collector.collect(BatchInterval(t0, 60))
            assert out["result"] == stored.result and out["report_count"] == len(ages) == (
                stored.report_count
            )
            true_counts = [sum(1 for a in ages if min(a // 10, 9) == i) for i in range(10)]
            assert max(abs(a - b) for a, b in zip(out["result"], true_counts, strict=True)) < 20
            drawn = browser.execute_script("return window.tessera.data['telemetry']")
            assert [d["count"] for d in drawn] == out["result"]

            def collections() -> list[str]:
                rows = by_id(browser, "telemetry-tasks").find_elements("css selector", "tbody tr")
                return [r.find_elements("css selector", "td")[-1].text for r in rows]

            wait_for("the collections counted", lambda: collections() == ["1", "1"])
            shot(browser, artifacts, "telemetry-histogram")
        finally:
            server.stop()
            console.close()


def test_a_training_started_from_the_page_is_drawn_round_by_round(
    live: Any, browser: Any, artifacts: Path
) -> None:
    from tessera.dp import rho_to_eps_delta
    from tessera.learning import LogisticRegression, TrainingConfig
    from tessera.ledger.model_registry import ModelRegistry

    features = ["age", "bmi", "glucose", "hba1c"]
    browser.get(live.url + "/#training")
    wait_for("the trainings", lambda: visible_text(browser, "trainings"))
    typed(browser, "train-rounds", "2")
    typed(browser, "train-epsilon", "2")
    by_id(browser, "train-quote-btn").click()
    wait_for("the quote", lambda: visible_text(browser, "train-quote"))
    config = TrainingConfig(rounds=2, unit="row", clip=1.0, epsilon=2.0, server_learning_rate=12)
    q = live.console.analyst.training_quote(
        "patients", LogisticRegression(4), features, "diabetes", config
    )
    assert int(by_id(browser, "train-price").text) == q.price
    assert close(float(by_id(browser, "train-eps").text), float(f"{q.epsilon:.6g}"))
    jobs = len(live.console.jobs)
    wait_for("the train button", lambda: by_id(browser, "train-btn").is_enabled())
    by_id(browser, "train-btn").click()
    wait_for("the job", lambda: len(live.console.jobs) > jobs)
    job = list(live.console.jobs.values())[-1]
    wait_for("the training", lambda: job.status != "running", timeout=2 * WAIT)
    assert job.status == "done", f"{job.error_kind}: {job.error}"
    res, tid = job.result, job.payload["training_id"]
    wait_for("the curve", lambda: tid in visible_text(browser, "training-meta"))
    wait_for(
        "the chart",
        lambda: browser.execute_script("return window.tessera.charts['training'] != null"),
    )
    # the registry chains the rounds; ε spent so far is its ρ, summed, at δ = 1e-6
    history = ModelRegistry(live.console.reader).history(bytes.fromhex(tid[2:]))
    assert len(history) == 3 and [r.query_id is not None for r in history] == [False, True, True]
    data = chart_data(browser, "training")
    eps = {p["round"]: p["value"] for p in data if p["measure"] == "ε spent"}
    total = 0
    for r in history:
        total += r.rho_micro
        want = rho_to_eps_delta(total / 1e6, 1e-6)[0] if total else 0.0
        assert close(eps[r.round], want)
    for r in res.rounds:  # the Python API's own account of each round
        assert math.isclose(eps[r.index + 1], r.epsilon_spent, rel_tol=1e-3)
    loss = {p["round"]: p["value"] for p in data if p["measure"] == "loss"}
    accuracy = {p["round"]: p["value"] for p in data if p["measure"] == "accuracy"}
    assert loss == {r.index + 1: r.loss for r in res.rounds}
    assert accuracy == {r.index + 1: r.score for r in res.rounds}
    rows = by_id(browser, "training-rounds").find_elements("css selector", "tbody tr")
    assert len(rows) == 3
    shot(browser, artifacts, "training-curve")


def test_an_mlp_chosen_on_the_page_is_trained_and_stored_by_cid(
    live: Any, browser: Any, artifacts: Path
) -> None:
    """The training form's other models: a one-round MLP (8 tanh units, 2 classes) of
    diabetes, quoted as the Python API quotes it; the round's model on the registry is an
    MLP of that shape, its parameters the TrainingResult's, and its loss the page's."""
    from tessera.learning import MLP, TrainingConfig
    from tessera.learning.serialize import decode_model
    from tessera.ledger.model_registry import ModelRegistry
    from tessera.node.model_store import LocalModelStore

    features = ["age", "bmi", "glucose", "hba1c"]
    browser.get(live.url + "/#training")
    wait_for("the trainings", lambda: visible_text(browser, "trainings"))
    choose(browser, "train-model", "mlp")
    wait_for("the MLP's fields", lambda: by_id(browser, "train-hidden").is_displayed())
    typed(browser, "train-hidden", "8")
    typed(browser, "train-classes", "2")
    typed(browser, "train-rounds", "1")
    typed(browser, "train-epsilon", "1")
    try:
        by_id(browser, "train-quote-btn").click()
        wait_for("the quote", lambda: visible_text(browser, "train-quote"))
        config = TrainingConfig(
            rounds=1, unit="row", clip=1.0, epsilon=1.0, server_learning_rate=12
        )
        q = live.console.analyst.training_quote(
            "patients", MLP(4, 8, 2), features, "diabetes", config
        )
        price = wait_for("the price", lambda: by_id(browser, "train-price").text)
        assert int(price) == q.price
        jobs = len(live.console.jobs)
        wait_for("the train button", lambda: by_id(browser, "train-btn").is_enabled())
        by_id(browser, "train-btn").click()
        wait_for("the job", lambda: len(live.console.jobs) > jobs)
        job = list(live.console.jobs.values())[-1]
        wait_for("the training", lambda: job.status != "running", timeout=2 * WAIT)
        assert job.status == "done", f"{job.error_kind}: {job.error}"
        assert job.training.model == "mlp" and job.training.hidden == 8
        res, tid = job.result, job.payload["training_id"]
        wait_for("the curve", lambda: tid in visible_text(browser, "training-meta"))
        history = ModelRegistry(live.console.reader).history(bytes.fromhex(tid[2:]))
        assert len(history) == 2
        model, params, meta = decode_model(
            LocalModelStore(live.net.dir / "models").get(history[-1].cid)
        )
        assert isinstance(model, MLP) and (model.hidden, model.classes) == (8, 2)
        assert params.size == 4 * 8 + 8 + 8 * 2 + 2 and meta["round"] == 1
        assert (params == res.params).all()
        rows = by_id(browser, "training-rounds").find_elements("css selector", "tbody tr")
        assert len(rows) == 2
        shot(browser, artifacts, "training-mlp")
    finally:
        choose(browser, "train-model", "logistic")
        typed(browser, "train-rounds", "2")
        typed(browser, "train-epsilon", "2")
