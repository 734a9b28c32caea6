"""The chat page in Chromium: sign in, streaming, the empty input after Enter, "New chat" mid-stream,
errors in view, stop, reload, rename and delete, agent steps, inert model output, phone width."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import expect

from tests.ui.conftest import UI, csp_reports, send, set_max_tokens, shot, sign_in, wait_for_answer

PAYLOAD = (
    "Look: <img src=x onerror=\"window.__pwned='img'\"> and <script>window.__pwned='script'</script>\n\n"
    "[click me](javascript:window.__pwned='link') <a href=\"javascript:alert(1)\">raw link</a>\n\n"
    "![remote](http://example.invalid/tracker.png) <iframe src=\"http://example.invalid/\"></iframe>\n\n"
    "<svg onload=\"window.__pwned='svg'\"></svg> <a href=\"https://example.org/\">a real link</a>"
)


def _answer_lengths_while_streaming(page: Any, seconds: float = 60) -> list[int]:
    """The answer's length, sampled while it streams: growing in steps shows tokens arriving one by one."""
    lengths: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = page.evaluate("""() => {
            const answers = document.querySelectorAll('.message.assistant .content');
            const last = answers[answers.length - 1];
            return {length: last ? last.textContent.length : 0, busy: !document.querySelector('#stop').hidden};
        }""")
        if state["length"] and (not lengths or lengths[-1] != state["length"]):
            lengths.append(state["length"])
        if not state["busy"]:
            break
        time.sleep(0.01)
    return lengths


def _session_id(page: Any) -> str:
    return str(page.evaluate("() => localStorage.getItem('openSession')"))


def test_wrong_password_shows_the_servers_message(page: Any, ui: UI) -> None:
    page.fill("#login-form input[name=username]", ui.server.settings.admin_username)
    page.fill("#login-form input[name=password]", "not-the-password")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).not_to_be_empty()
    assert page.is_visible("#login-form") and not page.is_visible("#app-view")
    shot(page, "sign-in-error")


def test_a_message_streams_in_and_the_input_is_empty_after_enter(page: Any, ui: UI) -> None:
    sign_in(page, ui)
    assert page.input_value("#model").startswith("SmolLM2")
    options = page.eval_on_selector_all("#model option", "options => options.map(option => option.value)")
    assert options == [page.input_value("#model")]  # the embedding model cannot chat
    set_max_tokens(page, 120)  # about 1.5 s of streaming: a stalled poll on a busy machine still sees pieces
    page.select_option("#mode", "chat")
    send(page, "Tell me about the city of Paris.")
    assert page.input_value("#prompt") == ""  # Enter sent it and left no blank line behind
    lengths = _answer_lengths_while_streaming(page)
    assert len(lengths) >= 3, f"the answer did not arrive in pieces: {lengths}"
    answer = wait_for_answer(page)
    assert answer.strip() and page.input_value("#prompt") == ""
    assert page.inner_text(".message.user") == "Tell me about the city of Paris."
    expect(page.locator(".message.assistant .badge.mode")).to_have_text("chat")
    expect(page.locator("#toast")).to_be_hidden()
    stored = ui.session(_session_id(page))
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    # The page shows the recorded answer (as rendered Markdown: list numbers and marks become layout).
    assert set(re.findall(r"\w+", answer)) <= set(re.findall(r"\w+", stored["messages"][1]["content"]))
    expect(page.locator(f".session[data-id='{stored['session_id']}']")).to_have_class("session active")
    assert csp_reports(page) == []
    shot(page, "chat")


def test_new_chat_pressed_mid_stream_keeps_the_two_conversations_apart(page: Any, ui: UI) -> None:
    sign_in(page, ui)
    set_max_tokens(page, 300)
    page.select_option("#mode", "chat")
    send(page, "Write a long story about a lighthouse keeper.")
    expect(page.locator(".message.assistant .content")).not_to_be_empty(timeout=60_000)
    first_id = _session_id(page)
    page.click("#new-chat")
    expect(page.locator(".message")).to_have_count(0)
    expect(page.locator("#stop")).to_be_hidden()
    set_max_tokens(page, 16)
    send(page, "Name a colour.")
    wait_for_answer(page)
    second_id = _session_id(page)
    assert second_id != first_id
    time.sleep(1)  # would let a leaking old stream write into the new chat
    users = page.locator(".message.user").all_inner_texts()
    assert users == ["Name a colour."] and page.locator(".message.assistant").count() == 1

    first, second = ui.session(first_id), ui.session(second_id)
    assert [m["content"] for m in first["messages"] if m["role"] == "user"] == [
        "Write a long story about a lighthouse keeper."]
    assert first["messages"][-1]["role"] == "assistant" and first["messages"][-1].get("incomplete") is True
    assert [m["content"] for m in second["messages"] if m["role"] == "user"] == ["Name a colour."]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant"]
    assert not second["messages"][1].get("incomplete")
    listed = {s["session_id"]: s for s in ui.sessions()}
    assert listed[first_id]["message_count"] == 2 and listed[second_id]["message_count"] == 2
    expect(page.locator(f".session[data-id='{second_id}']")).to_have_class("session active")


def test_an_error_message_is_visible_without_scrolling(page: Any, ui: UI) -> None:
    sign_in(page, ui)
    page.select_option("#mode", "chat")
    too_long = "lorem ipsum dolor sit amet " * 700  # more tokens than the model's context holds
    send(page, too_long)
    toast = page.locator("#toast")
    expect(toast).to_be_visible()
    expect(toast).to_have_attribute("role", "alert")
    message = page.inner_text("#toast-text")
    assert "token" in message.lower(), message
    box = toast.bounding_box()
    viewport = page.viewport_size
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    assert page.input_value("#prompt").strip() == too_long.strip()  # given back to edit, not lost
    expect(page.locator(".message")).to_have_count(0)
    shot(page, "error-in-view")


def test_stop_ends_a_long_answer_and_the_server_stops_generating(page: Any, ui: UI) -> None:
    sign_in(page, ui)
    set_max_tokens(page, 1500)
    page.select_option("#mode", "chat")
    send(page, "Write a very long story about a dragon who learns to bake bread.")
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator(".message.assistant .content")).not_to_be_empty(timeout=60_000)
    page.click("#stop")
    expect(page.locator("#send")).to_be_visible()
    expect(page.locator(".message.assistant .status")).to_have_text("Stopped.")
    shown = page.inner_text(".message.assistant .content")
    session_id = _session_id(page)
    deadline = time.monotonic() + 30
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:  # recorded once the server has seen the page leave
        response = ui.api("GET", f"/api/sessions/{session_id}")
        messages = response.json()["messages"] if response.status_code == 200 else []
        last = messages[-1] if messages else {}
        if last.get("role") == "assistant":
            break
        time.sleep(0.2)
    # Recorded as cut short: the server stopped when the page left, long before 1500 tokens.
    assert last.get("role") == "assistant" and last.get("incomplete") is True, last
    assert last["finish_reason"] is None
    assert len(last["content"]) < 3000
    time.sleep(1)
    assert page.inner_text(".message.assistant .content") == shown  # nothing arrives after Stop
    expect(page.locator("#toast")).to_be_hidden()


def test_reload_reopens_the_open_conversation_and_an_earlier_one_opens_from_the_sidebar(page: Any, ui: UI) -> None:
    sign_in(page, ui)
    set_max_tokens(page, 16)
    page.select_option("#mode", "chat")
    send(page, "Say hello to the reader.")
    first_answer = wait_for_answer(page)
    first_id = _session_id(page)
    page.reload()
    expect(page.locator("#app-view")).to_be_visible()
    expect(page.locator(".message.user")).to_have_text(["Say hello to the reader."])
    expect(page.locator(".message.assistant .content")).to_have_text([first_answer.strip()])
    page.click("#new-chat")
    send(page, "Say goodbye to the reader.")
    wait_for_answer(page)
    page.click(f".session[data-id='{first_id}'] .session-open")
    expect(page.locator(".message.user")).to_have_text(["Say hello to the reader."])
    expect(page.locator(f".session[data-id='{first_id}']")).to_have_class("session active")
    # The reopened conversation goes on in its own session.
    send(page, "And once more.")
    wait_for_answer(page)
    users = [m["content"] for m in ui.session(first_id)["messages"] if m["role"] == "user"]
    assert users == ["Say hello to the reader.", "And once more."]
    shot(page, "reopened-conversation")


def test_rename_and_delete_a_conversation_from_the_sidebar(page: Any, ui: UI) -> None:
    created = ui.api("POST", "/v1/chat/completions", json={
        "model": "SmolLM2-135M-Instruct", "max_tokens": 4, "mode": "chat", "session_id": "sess_rename_me",
        "messages": [{"role": "user", "content": "Rename me later"}]})
    assert created.status_code in (200, 404), created.text
    if created.status_code == 404:  # the model id differs: take the one the server lists
        model = ui.api("GET", "/v1/models").json()["data"][0]["id"]
        created = ui.api("POST", "/v1/chat/completions", json={
            "model": model, "max_tokens": 4, "mode": "chat", "session_id": "sess_rename_me",
            "messages": [{"role": "user", "content": "Rename me later"}]})
    assert created.status_code == 200, created.text
    sign_in(page, ui)
    row = page.locator(".session[data-id='sess_rename_me']")
    expect(row).to_contain_text("Rename me later")
    row.locator(".session-rename").click()
    page.fill(".session[data-id='sess_rename_me'] .rename-input", "Holiday plans")
    page.press(".session[data-id='sess_rename_me'] .rename-input", "Enter")
    expect(row.locator(".session-title")).to_have_text("Holiday plans")
    assert ui.session("sess_rename_me")["title"] == "Holiday plans"
    page.reload()
    expect(row.locator(".session-title")).to_have_text("Holiday plans")
    row.locator(".session-delete").click()
    page.click(".session[data-id='sess_rename_me'] .session-confirm-delete")
    expect(row).to_have_count(0)
    assert ui.api("GET", "/api/sessions/sess_rename_me").status_code == 404


def test_an_agent_question_shows_its_steps_and_the_chosen_mode(page: Any, ui: UI) -> None:
    sign_in(page, ui)
    set_max_tokens(page, 48)
    page.select_option("#mode", "auto")
    send(page, "What is the integral of x^2 from 0 to 3?")
    steps = page.locator(".message.assistant .steps")
    expect(steps).to_be_visible(timeout=60_000)
    wait_for_answer(page)
    expect(page.locator(".message.assistant .badge.mode")).to_have_text("ReAct")
    expect(page.locator(".message.assistant .meta .reason")).not_to_be_empty()
    table = steps.locator(".steps-table")
    expect(table).to_be_visible()
    expect(table).to_contain_text("math_calc")
    expect(table).to_contain_text("integral of x^2 from 0 to 3")
    expect(table.locator("tbody")).to_contain_text("9")
    steps.locator("summary").click()  # collapsible
    expect(table).to_be_hidden()
    steps.locator("summary").click()
    expect(table).to_be_visible()
    assert "9" in page.inner_text(".message.assistant .content")
    shot(page, "agent-steps")


def test_a_model_answer_with_script_img_and_javascript_link_stays_inert(page: Any, ui: UI) -> None:
    model = ui.api("GET", "/v1/models").json()["data"][0]["id"]
    # The assistant turn holding the payload is recorded as sent (the request's messages are authoritative).
    recorded = ui.api("POST", "/v1/chat/completions", json={
        "model": model, "max_tokens": 4, "mode": "chat", "session_id": "sess_xss_payload",
        "messages": [{"role": "user", "content": "Show me some HTML."},
                     {"role": "assistant", "content": PAYLOAD},
                     {"role": "user", "content": "Thanks."}]})
    assert recorded.status_code == 200, recorded.text
    dialogs: list[str] = []
    requests: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: requests.append(request.url))
    sign_in(page, ui)
    page.click(".session[data-id='sess_xss_payload'] .session-open")
    answer = page.locator(".message.assistant").first
    expect(answer.locator(".content")).to_contain_text("click me")
    content = answer.locator(".content")
    assert content.locator("script").count() == 0 and content.locator("iframe, svg").count() == 0
    assert content.locator("[onerror], [onload]").count() == 0
    assert content.locator("a[href^='javascript' i]").count() == 0
    link = content.get_by_text("click me")
    assert link.get_attribute("href") is None
    link.click()
    content.get_by_text("raw link").click()
    for image in content.locator("img").all():  # images from model output: inline data only
        assert image.get_attribute("src") is None
    real = content.locator("a[href='https://example.org/']")
    assert real.get_attribute("rel") == "noopener noreferrer" and real.get_attribute("target") == "_blank"
    time.sleep(0.5)
    assert page.evaluate("() => window.__pwned === undefined")
    assert dialogs == []
    assert [url for url in requests if not url.startswith(ui.url)] == []
    assert not [url for url in requests if url.rstrip("/").endswith(("/x", "tracker.png"))]
    shot(page, "inert-model-output")


def test_the_phone_width_shows_no_horizontal_scroll_and_the_sidebar_is_a_toggle(browser: Any, ui: UI) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True,
                                  reduced_motion="reduce")
    page = context.new_page()
    try:
        page.goto(ui.url)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
        sign_in(page, ui)
        expect(page.locator("#sidebar-toggle")).to_be_visible()
        assert not page.locator("#sidebar").is_visible() or page.locator("#sidebar").bounding_box()["x"] < -100
        set_max_tokens(page, 24)
        page.select_option("#mode", "chat")
        send(page, "Here is a long word: " + "x" * 300 + "\n```\n" + "y = 1  # " + "z" * 200 + "\n```")
        wait_for_answer(page)
        for panel in ("chat", "documents", "account", "admin"):
            if panel != "chat":
                page.click("#sidebar-toggle")
                page.click(f"nav .nav[data-panel='{panel}']")
            widths = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth]")
            assert max(widths) <= 375, (panel, widths)
            shot(page, f"phone-{panel}")
        page.click("#sidebar-toggle")
        box = page.locator("#sidebar").bounding_box()
        assert box is not None and box["x"] >= 0
        expect(page.locator("#new-chat")).to_be_visible()
        shot(page, "phone-sidebar")
        page.keyboard.press("Escape")
        expect(page.locator("#sidebar-toggle")).to_have_attribute("aria-expanded", "false")
    finally:
        context.close()


def test_code_fences_and_tables_render_and_code_copies_with_its_button(page: Any, ui: UI) -> None:
    model = ui.api("GET", "/v1/models").json()["data"][0]["id"]
    answer = ("Here is code:\n\n```python\ndef square(x):\n    return x * x\n```\n\n"
              "| city | people |\n|---|---|\n| Paris | 2.1 M |\n| Lyon | 0.5 M |\n\nDone, **bold** too.")
    recorded = ui.api("POST", "/v1/chat/completions", json={
        "model": model, "max_tokens": 4, "mode": "chat", "session_id": "sess_markdown_answer",
        "messages": [{"role": "user", "content": "Show code and a table."},
                     {"role": "assistant", "content": answer}, {"role": "user", "content": "Thanks."}]})
    assert recorded.status_code == 200, recorded.text
    sign_in(page, ui)
    page.click(".session[data-id='sess_markdown_answer'] .session-open")
    content = page.locator(".message.assistant .content").first
    expect(content.locator("pre code")).to_have_text("def square(x):\n    return x * x\n")
    assert "```" not in content.inner_text()
    expect(content.locator("table td")).to_have_text(["Paris", "2.1 M", "Lyon", "0.5 M"])
    expect(content.locator("strong")).to_have_text("bold")
    content.locator(".copy-code").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == "def square(x):\n    return x * x\n"
    page.locator(".message.assistant .copy-answer").first.click()
    assert page.evaluate("() => navigator.clipboard.readText()") == answer
    shot(page, "markdown")
