"""The web console's tests: a real network of processes, the console served from this
process, and headless Chromium (Debian's ``chromium`` and ``chromium-driver``) through
Selenium, given both paths so that it downloads nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tessera.cli.demo import network_spec
from tessera.data import medical
from tessera.node.launcher import Network
from tessera.web.console import Console
from tessera.web.server import ThreadedServer

CHROMIUM = Path(os.environ.get("TESSERA_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TESSERA_CHROMEDRIVER", "/usr/bin/chromedriver"))


@dataclass
class Live:
    net: Network
    console: Console
    server: ThreadedServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The demo's network (chain, 3 nodes t=2, 4 providers, a verifier) as processes, and
    the console over it, locked: the tests unlock it through the page."""
    reuse = os.environ.get("TESSERA_WEB_NETWORK")  # a running network's directory (iterating)
    net = Network(Path(reuse) if reuse else tmp_path_factory.mktemp("web-net") / "network")
    if not reuse:
        net.up(network_spec(kdf_iterations=2**10))
    console = server = None
    try:
        # the analyst's validation table for trainings: the bundled data, pooled
        validation = tmp_path_factory.mktemp("web-validation") / "patients.csv"
        pd.concat([medical.load(p) for p in medical.PROVIDERS]).to_csv(validation, index=False)
        console = Console(net.dir, validation=validation)
        server = ThreadedServer(console).start()
        yield Live(net, console, server)
    finally:
        if server is not None:
            server.stop()
        if console is not None:
            console.close()
        if not reuse:
            net.down()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where the screenshots go: ``$TESSERA_WEB_ARTIFACTS``, else ``tests/web/artifacts/``
    (git-ignored; kept after the run, unlike pytest's rotated temporary directories)."""
    where = os.environ.get("TESSERA_WEB_ARTIFACTS")
    path = Path(where) if where else Path(__file__).parent / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER}: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
