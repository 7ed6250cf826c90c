"""Who is calling: what the edge learned from a verified Firebase ID token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Claims every Firebase ID token carries; anything else is a custom claim the
# operator set (e.g. `plan`).
STANDARD_CLAIMS = frozenset(
    {"iss", "aud", "auth_time", "user_id", "sub", "iat", "exp", "email", "email_verified",
     "phone_number", "name", "picture", "firebase", "uid"}
)  # fmt: skip


@dataclass(frozen=True)
class Caller:
    uid: str
    # firebase.sign_in_provider: "anonymous", "password", "google.com", "custom", ...
    provider: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.provider == "anonymous"

    @classmethod
    def from_claims(cls, uid: str, claims: Mapping[str, Any]) -> Caller:
        firebase = claims.get("firebase")
        provider = firebase.get("sign_in_provider", "") if isinstance(firebase, Mapping) else ""
        custom = {k: v for k, v in claims.items() if k not in STANDARD_CLAIMS}
        return cls(uid, str(provider or ""), custom)
