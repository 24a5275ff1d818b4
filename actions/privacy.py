"""The customer's right to have their chat forgotten ("xóa dữ liệu của tôi", "forget me").

The rules explain what goes and what stays and ask for confirmation; on "yes" this action
erases the backend's data of the chat (backend.services.privacy.erase_chat) and returns the
erase marker, on which the runtime deletes the conversation's events instead of saving the turn,
so the next message starts a fresh conversation.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import chat_key, chat_ref
from backend.services import privacy


class ActionDeleteMyData(Action):
    def name(self) -> str:
        return "action_delete_my_data"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        channel, conversation = chat_key(tracker)
        erased = await privacy.erase_chat(channel, conversation, chat_ref(tracker).recipient_id)
        dispatcher.utter_message(
            response="utter_my_data_deleted", links=erased.links, subscriptions=erased.subscriptions, notices=erased.notices
        )
        return [privacy.erase_conversation_event()]
