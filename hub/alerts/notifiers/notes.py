"""The timeline notes the notifiers and the family cascade write (``timeline.note``),
with the console's labels; ``lifecycle.describe`` serves them with the audit
actions'. Pure: no I/O."""

from __future__ import annotations

NOTE_LABELS: dict[str, tuple[str, str]] = {
    "notify_failed": ("通知发送失败，将重试", "Notification failed; retrying"),
    "notify_given_up": ("通知多次失败，已放弃", "Notification given up"),
    "notify_delivered": ("通知重试后送达", "Notification delivered after retry"),
    "notify_receipt": ("短信回执", "Delivery receipt"),
    "family_notified": ("已通知紧急联系人", "Emergency contact notified"),
    "family_no_answer": ("联系人未在时限内回复", "Contact did not answer in time"),
    "family_answer": ("紧急联系人回复", "Emergency contact answered"),
    "family_exhausted": ("所有联系人均未回复", "No emergency contact answered"),
}
