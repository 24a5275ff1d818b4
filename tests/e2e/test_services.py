"""Customer services end to end over REST: bill views, tariff, account linking, service
requests with staff updates, outage reports with restoration notices, outage schedules."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.e2e.conftest import STAFF_TOKEN, Chat

STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}


async def linked_chat(client: TestClient, sender: str, code: str = "PE0400012345", phone: str = "0912345678") -> Chat:
    chat = Chat(client, sender)
    await chat.say("liên kết mã khách hàng")
    await chat.say(code)
    assert "Xác thực thành công" in await chat.say(phone)
    return chat


async def outbox(client: TestClient, sender: str) -> list[dict]:
    response = await client.get("/webhooks/rest/outbox", params={"sender": sender})
    assert response.status == 200
    return await response.json()


# -- bills ------------------------------------------------------------------------------------


async def test_unpaid_bills_with_total(client: TestClient) -> None:
    chat = await linked_chat(client, "dung", "PE1300056789", "0938777666")
    answer = await chat.say("tôi còn nợ bao nhiêu tiền điện")
    assert answer.count("kWh") == 2 and "Tổng cộng" in answer and "quá hạn" in answer


async def test_bill_breakdown_by_tier_with_vat(client: TestClient) -> None:
    chat = await linked_chat(client, "an-breakdown")
    answer = await chat.say("chi tiết hóa đơn theo bậc")
    assert "Bậc 1: 50 kWh × 1.984 đ = 99.200 đ" in answer
    assert "Bậc 6" not in answer and "Bậc 5: 12 kWh" in answer
    assert "Thuế GTGT 8%: 62.376 đ" in answer and "Tổng cộng: 842.076 đ" in answer


async def test_consumption_chart_is_a_signed_png(client: TestClient) -> None:
    chat = await linked_chat(client, "an-chart")
    replies = await chat.send('/lookup_bill{"bill_view": "chart"}')
    chart = next(r for r in replies if r.get("image"))
    assert "312 kWh" in chart["text"]  # channels without images still get the numbers
    path = chart["image"].split("5005", 1)[-1] if "5005" in chart["image"] else chart["image"]
    response = await client.get(path)
    assert response.status == 200 and (await response.read()).startswith(b"\x89PNG")
    forged = await client.get(path.replace("PE0400012345", "PD0100234567"))
    assert forged.status == 403


async def test_chat_linked_to_two_codes_is_asked_which(client: TestClient) -> None:
    chat = await linked_chat(client, "family")
    await chat.say("liên kết thêm mã PD0100234567")
    assert "Xác thực thành công" in await chat.say("0987654321")
    replies = await chat.send("tra cứu hóa đơn")
    titles = [b["title"] for r in replies for b in r.get("buttons", [])]
    assert titles == ["PE0400012345", "PD0100234567"]
    payload = next(b["payload"] for r in replies for b in r.get("buttons", []) if b["title"] == "PD0100234567")
    assert "Trần Thị Bình" in await chat.say(payload)


# -- tariff -----------------------------------------------------------------------------------


async def test_tariff_estimate_for_200_kwh(client: TestClient) -> None:
    answer = await Chat(client, "tariff").say("200 số hết bao nhiêu tiền")
    assert "Bậc 3: 100 kWh × 2.380 đ = 238.000 đ" in answer and "Tổng cộng: 474.876 đ" in answer


async def test_tariff_in_english_and_table(client: TestClient) -> None:
    chat = Chat(client, "tariff-en")
    assert "Total: 979,560 VND" in await chat.say("how much for 350 kWh")
    table = await chat.say("giá điện bậc thang")
    assert "1.984 đ/kWh" in table and "3.460 đ/kWh" in table


# -- account linking --------------------------------------------------------------------------


async def test_list_and_unlink_codes(client: TestClient) -> None:
    chat = await linked_chat(client, "unlinker")
    assert "PE0400012345" in await chat.say("danh sách mã đã liên kết")
    assert "hủy liên kết" in (await chat.say("hủy liên kết PE0400012345")).lower()
    assert "mã khách hàng" in await chat.say("tra cứu hóa đơn")  # asked to verify again


# -- service requests -------------------------------------------------------------------------


async def test_meter_inspection_request_then_staff_update_is_notified(client: TestClient) -> None:
    chat = await linked_chat(client, "inspect")
    assert "Số điện thoại liên hệ" in await chat.say("đăng ký kiểm định công tơ")
    assert "ngày nào" in await chat.say("0912 345 678")
    assert "mô tả" in await chat.say("ngày mai")
    summary = await chat.say("công tơ quay nhanh bất thường")
    assert "Kiểm định công tơ" in summary and "PE0400012345" in summary
    created = await chat.say("đồng ý")
    ticket = next(word for word in created.replace(".", " ").split() if word.startswith("YC"))
    assert "Đã tiếp nhận" in created
    assert "đã tiếp nhận" in await chat.say(f"yêu cầu {ticket} đến đâu rồi")

    response = await client.patch(f"/api/service-requests/{ticket}", json={"status": "scheduled", "note": "Thứ 6, 9:00"}, headers=STAFF)
    assert response.status == 200 and (await response.json())["status"] == "scheduled"
    notices = await outbox(client, "inspect")
    assert any(ticket in n["text"] and "đã hẹn lịch" in n["text"] for n in notices)
    assert await outbox(client, "inspect") == []  # handed over once
    assert "đã hẹn lịch" in await chat.say(f"tình trạng yêu cầu {ticket}")
    # Another chat cannot read it.
    assert "không tìm thấy" in await Chat(client, "nosy").say(f"yêu cầu {ticket} đến đâu rồi")


async def test_request_form_re_asks_bad_values(client: TestClient) -> None:
    chat = await linked_chat(client, "badvalues")
    await chat.say("đăng ký kiểm định công tơ")
    assert "định dạng" in await chat.say("abc")
    await chat.say("0912345678")
    assert "đã qua" in await chat.say("01/01/2020")
    assert "mô tả" in await chat.say("ngày mai")


async def test_unknown_service_type_shows_the_choices(client: TestClient) -> None:
    replies = await Chat(client, "which").send("tôi muốn đăng ký dịch vụ")
    titles = [b["title"] for r in replies for b in r.get("buttons", [])]
    assert "Cấp điện mới" in titles and len(titles) == 7


async def test_new_connection_needs_no_code_and_can_be_cancelled(client: TestClient) -> None:
    chat = Chat(client, "newhouse")
    assert "địa chỉ" in await chat.say("đăng ký cấp điện mới")
    assert "Số điện thoại" in await chat.say("15 đường số 9, phường Tân Phong, quận 7, TP.HCM")
    await chat.say("0909123456")
    await chat.say("thứ 2 tuần sau")
    assert "Cấp điện mới" in await chat.say("nhà mới xây cần lắp công tơ 1 pha")
    assert "Đã hủy" in await chat.say("/deny")


async def test_reconnection_comes_with_a_fee_payment_link(client: TestClient) -> None:
    chat = await linked_chat(client, "reconnect")
    await chat.say('/create_service_request{"service_type": "reconnection"}')
    await chat.say("0912345678")
    await chat.say("ngày mai")
    assert "110.000 đ" in await chat.say("đã thanh toán tiền nợ, xin đóng điện lại")
    created = await chat.say("/affirm")
    assert "YC" in created and "110.000 đ" in created and "/payments/" in created


# -- outages ----------------------------------------------------------------------------------


async def test_outage_in_an_area_with_a_known_incident_then_restored(client: TestClient) -> None:
    chat = Chat(client, "dark-q1")
    answer = await chat.say("mất điện ở phường Bến Thành quận 1")
    assert "sự cố đường dây trung thế" in answer and "BC" in answer
    response = await client.patch("/api/outages/SCDEMO0001", json={"status": "restored"}, headers=STAFF)
    body = await response.json()
    assert response.status == 200 and body["status"] == "restored" and body["notified"] >= 1
    notices = await outbox(client, "dark-q1")
    assert any("Điện đã được cấp lại" in n["text"] for n in notices)


async def test_reports_from_one_ward_form_one_incident(client: TestClient) -> None:
    first = Chat(client, "tp-1")
    assert "phường" in (await first.say("nhà tôi mất điện")).lower()  # asks where
    assert "Đã ghi nhận" in await first.say("phường Trung Hòa, Cầu Giấy")
    second = await Chat(client, "tp-2").say("cúp điện ở Trung Hòa Cầu Giấy rồi")
    assert "đã có 2 phản ánh" in second


async def test_linked_customer_outage_uses_their_address(client: TestClient) -> None:
    chat = await linked_chat(client, "an-dark")
    assert "sự cố đường dây trung thế" in await chat.say("nhà tôi mất điện rồi")


async def test_unknown_place_is_asked_again(client: TestClient) -> None:
    chat = Chat(client, "nowhere")
    await chat.say("mất điện")
    assert "chưa xác định" in await chat.say("ở chỗ nhà bà ngoại")


async def test_planned_outage_schedule(client: TestClient) -> None:
    answer = await Chat(client, "schedule").say("lịch cắt điện phường Tân Phong quận 7")
    assert "08:00" in answer and "16:00" in answer and "Tân Phong" in answer
    none = await Chat(client, "schedule-2").say("lịch cúp điện ở Bến Thành quận 1")
    assert "Không có lịch" in none


async def test_staff_api_needs_the_token(client: TestClient) -> None:
    assert (await client.patch("/api/outages/SCDEMO0001", json={"status": "restored"})).status == 401
    wrong = await client.patch("/api/outages/SCDEMO0001", json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    missing = await client.patch("/api/service-requests/YC00000000001", json={"status": "completed"}, headers=STAFF)
    assert missing.status == 404
    bad = await client.patch("/api/outages/SCDEMO0001", json={"status": "exploded"}, headers=STAFF)
    assert bad.status == 400
