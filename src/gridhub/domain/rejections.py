"""Why an inbound message was rejected: a closed set of stable codes.

Every rejected message is kept in the dead-letter store with one of these codes, and HTTP
clients receive the same code, so an operator can count and search them.
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    MALFORMED_JSON = "malformed_json"
    INVALID_MESSAGE = "invalid_message"  # valid JSON, but not a canonical message shape
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    UNKNOWN_IDENTIFIER = "unknown_identifier"
    WRONG_VALUE_TYPE = "wrong_value_type"
    NON_FINITE_VALUE = "non_finite_value"
    BAD_DATE = "bad_date"
    MISSING_OFFSET = "missing_offset"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TENANT = "unknown_tenant"
    OVERSIZED_PAYLOAD = "oversized_payload"
    TOPIC_MISMATCH = "topic_mismatch"
    BAD_TOPIC = "bad_topic"
    STORE_REJECTED = "store_rejected"  # valid, but the store refused to hold it
    BAD_CHECKSUM = "bad_checksum"  # a meter telegram whose CRC (DSMR) or BCC (IEC 62056-21) fails
    MALFORMED_TELEGRAM = "malformed_telegram"  # a meter telegram line or frame we cannot read
    RESERVED_DEVICE = "reserved_device"  # grid:<node> ids belong to the grid services' results
