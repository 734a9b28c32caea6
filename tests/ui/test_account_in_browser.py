"""Account and admin screens in Chromium: API keys (shown once, copied, revoked), password change, users
(create, disable, delete), an expired sign-in back to the sign-in page, and the page's CSP."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.ui.conftest import UI, csp_reports, shot, sign_in


def test_an_api_key_is_shown_once_copied_works_and_is_revoked(page: Any, ui: UI) -> None:
    sign_in(page, ui)
    page.click("nav .nav[data-panel='account']")
    page.fill("#key-form input[name=name]", "browser-laptop")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#new-key")).to_be_visible()
    key = page.inner_text("#new-key-value")
    page.click("#copy-key")
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    row = page.locator("#key-rows tr", has_text="browser-laptop")
    expect(row).to_be_visible()
    models = httpx.get(f"{ui.server.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert models.status_code == 200
    shot(page, "account")
    page.reload()
    page.click("nav .nav[data-panel='account']")
    expect(page.locator("#new-key")).to_be_hidden()  # shown once
    row.get_by_role("button", name="Revoke browser-laptop").click()
    expect(row).to_have_count(0)
    revoked = httpx.get(f"{ui.server.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert revoked.status_code == 401


def test_an_admin_creates_disables_and_deletes_a_user_who_can_change_their_password(
    page: Any, ui: UI, browser: Any
) -> None:
    sign_in(page, ui)
    page.click("nav .nav[data-panel='admin']")
    page.fill("#user-form input[name=username]", "carol")
    page.fill("#user-form input[name=password]", "carol-password-1")
    page.click("#user-form button[type=submit]")
    row = page.locator("#user-rows tr[data-username='carol']")
    expect(row).to_contain_text("active")
    shot(page, "admin")

    carol = browser.new_context().new_page()
    carol.goto(ui.url)
    carol.fill("#login-form input[name=username]", "carol")
    carol.fill("#login-form input[name=password]", "carol-password-1")
    carol.click("#login-form button[type=submit]")
    expect(carol.locator("#app-view")).to_be_visible()
    expect(carol.locator("#nav-admin")).to_be_hidden()  # not an admin
    carol.click("nav .nav[data-panel='account']")
    carol.fill("#password-form input[name=current]", "carol-password-1")
    carol.fill("#password-form input[name=new]", "carol-password-2")
    carol.click("#password-form button[type=submit]")
    expect(carol.locator("#password-result")).to_contain_text("Password changed")
    login = httpx.post(f"{ui.server.base_url}/api/auth/login", timeout=30,
                       json={"username": "carol", "password": "carol-password-2"})
    assert login.status_code == 200

    row.get_by_role("button", name="Disable").click()
    expect(row).to_contain_text("disabled")
    # Carol's page finds out at its next request: back to sign-in, with the reason in words.
    carol.click("nav .nav[data-panel='documents']")
    expect(carol.locator("#login-view")).to_be_visible()
    expect(carol.locator("#login-notice")).to_have_text("Your sign-in expired. Please sign in again.")
    shot(carol, "sign-in-expired")
    carol.context.close()

    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Delete carol and all their data").click()
    expect(row).to_have_count(0)
    users = ui.api("GET", "/api/admin/users").json()["data"]
    assert "carol" not in [user["username"] for user in users]


def test_the_page_runs_under_its_content_security_policy(page: Any, ui: UI) -> None:
    response = page.goto(ui.url)
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    sign_in(page, ui)
    page.click("nav .nav[data-panel='documents']")
    page.click("nav .nav[data-panel='account']")
    # Chromium logs every load or inline script the policy blocks: the page needs none.
    assert csp_reports(page) == []
    # Keyboard: Tab reaches the controls and shows where focus is.
    page.click("nav .nav[data-panel='chat']")
    page.focus("#new-chat")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.tagName, getComputedStyle(document.activeElement).outlineStyle]")
    assert focused == ["BUTTON", "solid"], focused


def test_the_page_follows_the_systems_dark_mode(browser: Any, ui: UI) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        page.goto(ui.url)
        sign_in(page, ui)
        backgrounds[scheme] = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        shot(page, f"{scheme}-mode")
        context.close()
    assert backgrounds == {"light": "rgb(255, 255, 255)", "dark": "rgb(21, 23, 28)"}
