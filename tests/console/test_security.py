"""Sessions, roles, CSRF, lockout, escaping: every console route checks who is asking."""

from __future__ import annotations

from aiohttp import ClientSession, WSServerHandshakeError
from aiohttp.test_utils import TestClient

from backend.services import handoff
from tests.console.conftest import PASSWORD
from tests.e2e.conftest import Chat

ROUTES = ["/console/", "/console/?filter=mine", "/console/audit", "/console/h/1"]


async def test_every_route_needs_a_session(client: TestClient) -> None:
    for path in ROUTES:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 401, path
    for action in ("claim", "reply", "note", "handback", "close", "transfer", "pay"):
        assert (await client.post(f"/console/h/1/{action}", data={"text": "x"})).status == 401
    async with ClientSession() as http:
        try:
            await http.ws_connect(str(client.make_url("/console/ws")))
            raise AssertionError("the WebSocket opened without a session")
        except WSServerHandshakeError as exc:
            assert exc.status == 401


async def test_session_cookie_flags_and_logout(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan", login=False)
    page = await (await lan.http.get(f"{lan.base_url}/console/login")).text()
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = await lan.http.post(
        f"{lan.base_url}/console/login", data={"csrf_token": token, "username": "lan", "password": PASSWORD}, allow_redirects=False
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert (await lan.get("/console/"))[0] == 200
    queue = (await lan.get("/console/"))[1]
    lan.csrf = queue.split('name="csrf_token" value="')[1].split('"')[0]
    await lan.http.post(f"{lan.base_url}/console/logout", data={"csrf_token": lan.csrf})
    assert (await lan.get("/console/"))[0] == 401


async def test_login_needs_the_login_csrf_token(client: TestClient, make_agent) -> None:
    await make_agent("lan", login=False)
    response = await client.post("/console/login", data={"username": "lan", "password": PASSWORD}, allow_redirects=False)
    assert response.status == 403


async def test_posts_without_the_csrf_token_are_refused(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan")
    await Chat(client, "khach-csrf").say("/talk_to_human")
    info = await handoff.open_handoff("khach-csrf")
    assert info is not None
    response = await lan.http.post(f"{lan.base_url}/console/h/{info.id}/claim", data={}, allow_redirects=False)
    assert response.status == 403
    response = await lan.http.post(f"{lan.base_url}/console/h/{info.id}/claim", data={"csrf_token": "forged"}, allow_redirects=False)
    assert response.status == 403
    assert (await handoff.get_handoff(info.id)).status == "waiting"  # type: ignore[union-attr]


async def test_lockout_after_repeated_failures(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan", login=False)
    for _ in range(5):
        assert await lan.login("wrong password!") != 200
    assert await lan.login() != 200  # locked, even with the right password
    _, page = await lan.get("/console/login?error=locked")
    assert "tạm khóa" in page


async def test_roles_agents_cannot_read_the_audit_log_admins_can(client: TestClient, make_agent) -> None:
    lan, boss = await make_agent("lan"), await make_agent("boss", "admin")
    assert (await lan.get("/console/audit"))[0] == 403
    await Chat(client, "khach-audit").say("/talk_to_human")
    info = await handoff.open_handoff("khach-audit")
    await lan.post(f"/console/h/{info.id}/claim")  # type: ignore[union-attr]
    status, page = await boss.get("/console/audit")
    assert status == 200 and "claimed" in page and "lan" in page


async def test_an_agent_cannot_read_a_colleagues_conversation(client: TestClient, make_agent) -> None:
    lan, minh, boss = await make_agent("lan"), await make_agent("minh"), await make_agent("boss", "admin")
    await Chat(client, "khach-private").say("/talk_to_human")
    info = await handoff.open_handoff("khach-private")
    assert info is not None
    await lan.post(f"/console/h/{info.id}/claim")
    assert (await minh.get(f"/console/h/{info.id}"))[0] == 403
    assert (await minh.post(f"/console/h/{info.id}/reply", text="hi"))[0] == 403
    assert (await minh.post(f"/console/h/{info.id}/handback"))[0] == 403
    assert (await boss.get(f"/console/h/{info.id}"))[0] == 200
    _, queue = await minh.get("/console/?filter=open")
    assert info.ref not in queue


async def test_customer_text_is_escaped(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan")
    chat = Chat(client, "khach-xss")
    await chat.say("/talk_to_human")
    await chat.send('<script>alert("x")</script><img src=x onerror=alert(1)>')
    info = await handoff.open_handoff("khach-xss")
    _, queue = await lan.get("/console/")
    _, page = await lan.get(f"/console/h/{info.id}")  # type: ignore[union-attr]
    for html in (queue, page):
        assert '<script>alert("x")</script>' not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(" in html


async def test_websocket_from_another_origin_is_refused(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan")
    try:
        await lan.http.ws_connect(f"{lan.base_url}/console/ws", headers={"Origin": "https://evil.example"})
        raise AssertionError("cross-origin WebSocket accepted")
    except WSServerHandshakeError as exc:
        assert exc.status == 403


async def test_live_events_reach_the_console(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan")
    ws = await lan.http.ws_connect(f"{lan.base_url}/console/ws", headers={"Origin": lan.base_url})
    chat = Chat(client, "khach-live")
    await chat.say("/talk_to_human")
    assert (await ws.receive_json(timeout=5)) == {"type": "queue"}
    await chat.send("mất điện cả ngày rồi")
    event = await ws.receive_json(timeout=5)
    assert event["type"] == "message" and event["role"] == "customer" and event["text"] == "mất điện cả ngày rồi"
    await ws.close()


async def test_an_agent_does_not_receive_live_messages_of_a_colleagues_chat(client: TestClient, make_agent) -> None:
    lan, minh = await make_agent("lan"), await make_agent("minh")
    chat = Chat(client, "khach-live2")
    await chat.say("/talk_to_human")
    info = await handoff.open_handoff("khach-live2")
    await lan.post(f"/console/h/{info.id}/claim")  # type: ignore[union-attr]
    ws = await minh.http.ws_connect(f"{minh.base_url}/console/ws", headers={"Origin": minh.base_url})
    await chat.send("số tài khoản của tôi là bí mật")
    await Chat(client, "khach-live3").say("/talk_to_human")  # something minh may see
    event = await ws.receive_json(timeout=5)
    assert event == {"type": "queue"}
    await ws.close()


async def test_the_console_speaks_english_on_request(client: TestClient) -> None:
    response = await client.get("/console/login?lang=en")
    assert "Log in" in await response.text()
    assert "console_lang=en" in response.headers["Set-Cookie"] or "console_lang" in str(response.cookies)
