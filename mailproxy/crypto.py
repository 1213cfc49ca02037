"""Encryption of SMTP passwords at rest: KMS in AWS, a local Fernet key in local mode."""

from __future__ import annotations

import base64
from typing import Any, Protocol

from cryptography.fernet import Fernet, InvalidToken


class SecretBox(Protocol):
    def encrypt(self, plaintext: str, context: dict[str, str]) -> str: ...
    def decrypt(self, ciphertext: str, context: dict[str, str]) -> str: ...


class DecryptionError(RuntimeError):
    pass


class LocalSecretBox:
    """Fernet (AES-128-CBC + HMAC) with a key given to the process; the context is bound in as a prefix."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def encrypt(self, plaintext: str, context: dict[str, str]) -> str:
        bound = _bind(context) + plaintext
        return "fernet:" + self._fernet.encrypt(bound.encode()).decode()

    def decrypt(self, ciphertext: str, context: dict[str, str]) -> str:
        try:
            bound = self._fernet.decrypt(ciphertext.removeprefix("fernet:").encode()).decode()
        except InvalidToken:
            raise DecryptionError("stored secret cannot be decrypted with this key") from None
        prefix = _bind(context)
        if not bound.startswith(prefix):
            raise DecryptionError("stored secret belongs to another record")
        return bound[len(prefix) :]


class KmsSecretBox:
    """KMS with the encryption context bound in. Decrypted values are kept for the life of the container
    (keyed by ciphertext, which changes whenever the secret does): one KMS call per account, not per batch."""

    def __init__(self, kms: Any, key_id: str) -> None:
        self._kms = kms
        self._key_id = key_id
        self._plain: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def encrypt(self, plaintext: str, context: dict[str, str]) -> str:
        blob = self._kms.encrypt(KeyId=self._key_id, Plaintext=plaintext.encode(), EncryptionContext=context)
        return "kms:" + base64.b64encode(blob["CiphertextBlob"]).decode()

    def decrypt(self, ciphertext: str, context: dict[str, str]) -> str:
        key = (ciphertext, tuple(sorted(context.items())))
        if key not in self._plain:
            blob = base64.b64decode(ciphertext.removeprefix("kms:"))
            plain: bytes = self._kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
            self._plain[key] = plain.decode()
        return self._plain[key]


def _bind(context: dict[str, str]) -> str:
    return "".join(f"{k}={v}\x00" for k, v in sorted(context.items())) + "\x01"


def new_local_key() -> str:
    return Fernet.generate_key().decode()
