"""The control plane on Redis or Valkey (``cluster.redis_url``), through
``valkey-glide`` (its Rust core runs under Trio). Imported only when configured.

What each replica keeps there (layout in ``_scripts.py``): one hash per session it
holds, with the session TTL; its own entry (load, capacity, draining); its sessions'
count per API key. A heartbeat every third of the TTL rewrites all of it, so a Redis
that restarted empty is whole again within one beat, and a replica that died without
a word disappears within the TTL.

Routing: a request for a session another replica holds is published on that replica's
channel, with a nonce and this replica's channel for the answer; the holder acts on it
(the same code a local request runs) and publishes the reply. ``PUBLISH`` reaching no
subscriber means the holder is gone: the answer is 404 at once (and its entry is
dropped). No answer within ``cluster.route_timeout_ms``: 504.

Two clients: one subscribed to this replica's channel (glide resubscribes by itself
after a reconnect), one for commands. While Redis is down, what needs the directory
answers 503 ``control_plane_unavailable``; per-key limits fall back to this replica's
own count (a replica keeps serving its sessions through an outage of the plane), at
once while the plane is known down: no message waits out a command timeout.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import trio
from glide import (
    BackoffStrategy,
    GlideClient,
    GlideClientConfiguration,
    GlideError,
    Logger,
    LogLevel,
    NodeAddress,
    Script,
    ServerCredentials,
)

from ...config import ClusterConfig
from ...protocol import ClientError, ErrorCode, ServerError, parse_audio_config
from ..security import ANONYMOUS, Caller, rate_refusal
from ..session import Session, SessionManager
from . import _scripts
from ._plane import NOTHING, Receipt, delete_here, interrupt_here, unknown_session

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: A Redis command that takes longer than this is treated as Redis being down: the
#: plane answers 503 rather than hold a client's request.
COMMAND_TIMEOUT_MS: Final = 500
#: Reconnect attempts back off up to 50 ms x 2^4 = 0.8 s, then retry at that pace
#: forever: back within a second of Redis returning.
RECONNECT: Final = BackoffStrategy(num_of_retries=4, factor=50, exponent_base=2)
#: While the subscription client cannot reach Redis at start-up, it retries this often.
SUBSCRIBE_RETRY_S: Final = 0.5
#: ``Retry-After`` of a 503 ``control_plane_unavailable``: reconnects take about a second.
UNAVAILABLE_RETRY_MS: Final = 1000
#: A key's slot counts outlive every replica's heartbeat by this factor of the TTL:
#: a key nobody uses any more leaves Redis by itself.
SLOTS_TTL_FACTOR: Final = 10
#: ``cluster.redis_url`` schemes that speak TLS.
TLS_SCHEMES: Final = ("rediss", "valkeys")
#: Bound on closing the two clients at shutdown.
CLOSE_TIMEOUT_S: Final = 2.0

_new_script: Callable[[str], Script] = Script  # glide's constructor is untyped
_REGISTER: Final = _new_script(_scripts.REGISTER)
_REMOVE: Final = _new_script(_scripts.REMOVE)
_LIST: Final = _new_script(_scripts.LIST)
_CLAIM: Final = _new_script(_scripts.CLAIM)
_UNCLAIM: Final = _new_script(_scripts.UNCLAIM)
_SLOTS: Final = _new_script(_scripts.SLOTS)
_CHARGE: Final = _new_script(_scripts.CHARGE)
_ROUTE: Final = _new_script(_scripts.ROUTE)

P: Final = _scripts.PREFIX


def _session_key(session_id: str) -> str:
    return f"{P}s:{session_id}"


def _channel(replica: str) -> str:
    return f"{P}c:{replica}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _unavailable() -> ServerError:
    return ServerError(
        ErrorCode.CONTROL_PLANE_UNAVAILABLE,
        "the cluster's control plane (Redis) cannot be reached; retry shortly",
        details={"retry_after_ms": UNAVAILABLE_RETRY_MS},
    )


def client_configuration(url: str, channel: str | None = None) -> GlideClientConfiguration:
    """A glide configuration for ``cluster.redis_url`` (validated by the config)."""
    parts = urlsplit(url)
    credentials = None
    if parts.password is not None:
        user = unquote(parts.username or "") or None
        credentials = ServerCredentials(unquote(parts.password), user)
    subscriptions = None
    if channel is not None:
        modes = GlideClientConfiguration.PubSubChannelModes
        subscriptions = GlideClientConfiguration.PubSubSubscriptions(
            channels_and_patterns={modes.Exact: {channel}}, callback=None, context=None
        )
    db = parts.path.strip("/")
    return GlideClientConfiguration(
        [NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)],
        use_tls=parts.scheme in TLS_SCHEMES,
        credentials=credentials,
        database_id=int(db) if db else None,
        request_timeout=COMMAND_TIMEOUT_MS,
        reconnect_strategy=RECONNECT,
        pubsub_subscriptions=subscriptions,
        # A replica starts (and serves its own sessions) while Redis is away.
        lazy_connect=True,
    )


@dataclass
class _Reply:
    done: trio.Event = field(default_factory=trio.Event)
    body: dict[str, Any] = field(default_factory=dict)


class _Undo:
    """A receipt that, released (once), runs one Redis command in the background: a
    charge's ``ZREM``, a claim given back, a slot count rewritten. ``command`` makes
    the call only then (an awaitable made early and never awaited warns)."""

    __slots__ = ("_command", "_plane")

    def __init__(self, plane: RedisPlane, command: Callable[[], Awaitable[object]]) -> None:
        self._plane: RedisPlane | None = plane
        self._command = command

    def release(self) -> None:
        plane, self._plane = self._plane, None
        if plane is not None:
            plane._soon(self._command())


class RedisPlane:
    """``ControlPlane`` over Redis/Valkey (module docstring). ``run`` it in a nursery."""

    distributed = True

    def __init__(
        self,
        settings: ClusterConfig,
        manager: SessionManager,
        replica_id: str,
        describe: Callable[[], dict[str, object]],
    ) -> None:
        self.manager = manager
        self.replica_id: str | None = replica_id
        self._me = replica_id
        self._url = settings.redis_url or ""
        self._security = manager.services.security
        self._ttl_ms = int(settings.session_ttl_s * 1000)
        self._route_timeout_s = settings.route_timeout_ms / 1000
        self._describe = describe
        self._dirty: set[str] = set()
        self._wake = trio.Event()
        self._replies: dict[str, _Reply] = {}
        self._slot_keys: set[str] = set()
        self._up = True
        self._nursery: trio.Nursery | None = None
        self._cmd: GlideClient
        self._sub: GlideClient

    # --- life --------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[RedisPlane]) -> None:
        """Connect (lazily), start the heartbeat, the directory writer and the
        subscription; report started at once (Redis may come later)."""
        Logger.set_logger_config(LogLevel.OFF)  # its warnings would flood our log
        self._cmd = await GlideClient.create(client_configuration(self._url))
        self._sub = await GlideClient.create(
            client_configuration(self._url, _channel(self._me))
        )
        self.manager.on_change = self._changed
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._write_changes)
                nursery.start_soon(self._listen)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.manager.on_change = None
            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                for client in (self._sub, self._cmd):
                    try:
                        await client.close()
                    except GlideError:
                        pass

    def _soon(self, work: Awaitable[object]) -> None:
        """Run ``work`` in the background; an unavailable Redis is logged, not raised."""

        async def run() -> None:
            try:
                await self._call(work)
            except ServerError:
                pass

        if self._nursery is not None:
            self._nursery.start_soon(run)
        elif hasattr(work, "close"):
            work.close()  # never awaited: no warning

    async def _call(self, work: Awaitable[_T]) -> _T:
        """Await a glide call; its failure becomes 503 ``control_plane_unavailable``."""
        try:
            result = await work
        except GlideError as exc:
            if self._up:
                log.warning("control plane: Redis unavailable (%s)", exc)
                self._up = False
            raise _unavailable() from None
        if not self._up:
            log.info("control plane: Redis reachable again")
            self._up = True
        return result

    async def _script(self, script: Script, args: list[str], keys: list[str] | None = None) -> Any:
        return await self._call(self._cmd.invoke_script(script, keys=keys or [], args=args))

    # --- the directory -------------------------------------------------------------
    def _changed(self, session_id: str) -> None:
        self._dirty.add(session_id)
        self._wake.set()

    def _entry(self, session: Session) -> list[str]:
        return [
            session.id,
            session.owner.key_id or "",
            "1" if session.attached else "0",
            json.dumps(session.config.to_json()),
            json.dumps(session.to_json()),
        ]

    async def _write(self, sessions: list[Session]) -> None:
        """Write these sessions' entries; drop the ones another replica claimed."""
        args = [P, self._me, str(self._ttl_ms)]
        for session in sessions:
            args += self._entry(session)
        lost = await self._script(_REGISTER, args)
        for raw in lost or ():
            gone = self.manager.sessions.get(_text(raw))
            if gone is not None and not gone.attached:
                log.info("session %s: attached on another replica; dropped here", gone.id)
                self.manager.remove(gone)

    async def _write_changes(self) -> None:
        """Keep the directory up with sessions created and removed here, promptly."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            dirty, self._dirty = self._dirty, set()
            live = [self.manager.sessions[i] for i in dirty if i in self.manager.sessions]
            gone = [i for i in dirty if i not in self.manager.sessions]
            try:
                if live:
                    await self._write(live)
                if gone:
                    await self._script(_REMOVE, [P, self._me, *gone])
            except ServerError:
                pass  # the next heartbeat rewrites everything

    async def _write_slots(self, key_ids: list[str]) -> None:
        counts = self._security.quotas.open_counts()
        for key_id in key_ids:
            slots, count = f"{P}slots:{key_id}", counts.get(key_id, 0)
            if count:
                await self._call(self._cmd.custom_command(["HSET", slots, self._me, str(count)]))
                await self._call(
                    self._cmd.custom_command(
                        ["PEXPIRE", slots, str(self._ttl_ms * SLOTS_TTL_FACTOR)]
                    )
                )
                self._slot_keys.add(key_id)
            else:
                await self._call(self._cmd.custom_command(["HDEL", slots, self._me]))
                self._slot_keys.discard(key_id)

    async def _beat(self) -> None:
        await self._call(
            self._cmd.custom_command(
                ["SET", f"{P}r:{self._me}", json.dumps(self._describe()), "PX", str(self._ttl_ms)]
            )
        )
        sessions = list(self.manager.sessions.values())
        await self._write(sessions)
        # A session removed while its entry was being written: remove it again.
        for session in sessions:
            if session.id not in self.manager.sessions:
                self._changed(session.id)
        await self._write_slots(sorted(self._slot_keys | set(self._security.quotas.open_counts())))

    async def _heartbeat(self) -> None:
        """Every third of the TTL, rewrite everything this replica holds."""
        while True:
            try:
                await self._beat()
            except ServerError:
                pass  # logged once by _call; the next beat heals
            await trio.sleep(self._ttl_ms / 3000)

    async def _records(self) -> list[tuple[str, str, str, bool, dict[str, Any]]]:
        """(id, replica, key, attached, snapshot) of every live session."""
        flat = [_text(v) for v in await self._script(_LIST, [P]) or ()]
        out = []
        for i in range(0, len(flat) - 4, 5):
            session_id, replica, key, attached, snapshot = flat[i : i + 5]
            out.append((session_id, replica, key, attached == "1", json.loads(snapshot)))
        return out

    def _owner(self, key_id: str) -> Caller:
        """The caller who created a session of ``key_id`` (its key, as configured here)."""
        if not key_id:
            return ANONYMOUS
        return Caller(self._security.keys.get(key_id))

    # --- what the routes ask ---------------------------------------------------------
    def _local(self, session: Session) -> dict[str, object]:
        return session.to_json() | {"replica": self._me}

    async def list_sessions(self, caller: Caller) -> list[dict[str, object]]:
        found: dict[str, dict[str, object]] = {}
        for session_id, replica, key, _, snapshot in await self._records():
            if replica != self._me and caller.can_see(self._owner(key)):
                found[session_id] = snapshot | {"replica": replica}
        for session in self.manager.visible(caller):
            found[session.id] = self._local(session)  # live, not a heartbeat old
        return list(found.values())

    async def waiting(self, caller: Caller) -> int:
        if caller.key_id is None:
            return 0
        return sum(
            1 for _, _, key, attached, _ in await self._records()
            if key == caller.key_id and not attached
        )

    async def get_session(self, session_id: str, caller: Caller) -> dict[str, object]:
        session = self.manager.sessions.get(session_id)
        if session is not None:
            return self._local(self.manager.get(session_id, caller))
        return await self._route("get", session_id, caller)

    async def delete_session(self, session_id: str, caller: Caller) -> dict[str, object]:
        if session_id in self.manager.sessions:
            return delete_here(self.manager, session_id, caller)
        return await self._route("delete", session_id, caller)

    async def interrupt(
        self, session_id: str, caller: Caller, reason: str, received_at: float
    ) -> dict[str, object]:
        if session_id in self.manager.sessions:
            return interrupt_here(self.manager, session_id, caller, reason, received_at)
        return await self._route("interrupt", session_id, caller, reason=reason)

    async def register(self, session: Session) -> None:
        await self._write([session])

    async def claim(self, session_id: str, caller: Caller) -> Receipt:
        fields = await self._call(
            self._cmd.custom_command(["HMGET", _session_key(session_id), "replica", "key"])
        )
        replica, key = (None if v is None else _text(v) for v in fields)
        if replica is None:
            if session_id in self.manager.sessions:
                return NOTHING  # ours; its entry is back with the next beat (Redis restarted)
            raise unknown_session(session_id)
        owner = self._owner(key or "")
        if not caller.can_see(owner):
            raise unknown_session(session_id)
        answer = [
            _text(v)
            for v in await self._script(
                _CLAIM, [P, session_id, self._me, str(self._ttl_ms)]
            )
        ]
        if answer[0] == "unknown":
            raise unknown_session(session_id)
        if answer[0] == "in_use":
            raise ClientError(
                ErrorCode.SESSION_IN_USE,
                f"session {session_id} is attached to another connection",
            )
        previous, config = answer[1], answer[2]
        if session_id not in self.manager.sessions:
            self.manager.create(
                parse_audio_config(json.loads(config)), owner, session_id=session_id
            )
        if previous != self._me:
            # The replica it was created on lets go of its copy now (else at its next beat).
            message = json.dumps({"op": "release", "id": session_id})
            self._soon(self._cmd.publish(message, _channel(previous)))
        unclaim = [P, session_id, self._me]
        return _Undo(self, lambda: self._cmd.invoke_script(_UNCLAIM, keys=[], args=unclaim))

    async def open_slot(self, caller: Caller) -> Receipt:
        key = caller.key
        if key is None or not key.max_sessions:
            return NOTHING
        if not self._up:
            return NOTHING  # known down: no command timeout to wait out (the beat retries)
        mine = self._security.quotas.sessions(key.id)
        try:
            ok, others = await self._script(
                _SLOTS,
                [f"{P}r:", self._me, str(key.max_sessions), str(mine)],
                keys=[f"{P}slots:{key.id}"],
            )
        except ServerError:
            return NOTHING  # this replica's own count still holds (module docstring)
        self._slot_keys.add(key.id)
        if not ok:
            # The policy's own refusal: held elsewhere and here, with the new one.
            self._security.quotas.check_room(caller, int(others) + mine - 1)
        key_id = key.id
        return _Undo(self, lambda: self._write_slots([key_id]))

    async def charge(self, caller: Caller, chars: int, request_id: str | None) -> Receipt:
        key = caller.key
        if key is None or not key.chars_per_minute:
            return NOTHING
        if not self._up:
            return NOTHING  # known down: this replica's own count holds meanwhile
        window_s = self._security.quotas.window_s
        charges = f"{P}chars:{key.id}"
        member = f"{chars}:{self._me}:{secrets.token_hex(6)}"
        try:
            answer = await self._script(
                _CHARGE,
                [str(chars), str(key.chars_per_minute), str(int(window_s * 1000)), member],
                keys=[charges],
            )
        except ServerError:
            return NOTHING
        if int(answer[0]) == 1:
            return _Undo(self, lambda: self._cmd.custom_command(["ZREM", charges, member]))
        retry_ms, used = int(answer[1]), int(answer[2])
        retry_s = None if retry_ms < 0 else retry_ms / 1000
        raise rate_refusal(caller, chars, used, retry_s, window_s, request_id)

    def status(self) -> dict[str, object] | None:
        return {"replica_id": self._me, "control_plane": "up" if self._up else "down"}

    # --- routing -------------------------------------------------------------------
    async def _route(
        self, op: str, session_id: str, caller: Caller, **args: object
    ) -> dict[str, object]:
        """Send ``op`` to the replica holding ``session_id`` (looked up and published in
        one round trip) and wait for its answer. Who may see the session is decided
        there, against its owner, by the same rule as a local call."""
        nonce = secrets.token_hex(8)
        reply = self._replies[nonce] = _Reply()
        try:
            message = {
                "op": op, "id": session_id, "nonce": nonce, "reply": _channel(self._me),
                "caller": caller.key_id, **args,
            }
            routed = await self._script(
                _ROUTE, [P, session_id, json.dumps(message), self._me]
            )
            if not routed:
                raise unknown_session(session_id)
            replica, receivers = _text(routed[0]), int(routed[1])
            if not receivers:
                # Nobody listens on the holder's channel: it is gone. Its entry would
                # expire within the TTL; the answer is now.
                self._soon(self._script(_REMOVE, [P, replica, session_id]))
                raise unknown_session(session_id)
            with trio.move_on_after(self._route_timeout_s):
                await reply.done.wait()
            if not reply.done.is_set():
                raise ServerError(
                    ErrorCode.ROUTE_TIMEOUT,
                    f"replica {replica} holding session {session_id} did not answer in time",
                    details={"retry_after_ms": UNAVAILABLE_RETRY_MS},
                )
        finally:
            del self._replies[nonce]
        error = reply.body.get("error")
        if isinstance(error, dict):
            try:
                code = ErrorCode(str(error.get("code")))
            except ValueError:
                code = ErrorCode.INTERNAL_ERROR
            if code is ErrorCode.INTERNAL_ERROR:
                raise ServerError(code, "the replica holding the session failed")
            raise ClientError(code, str(error.get("message", "")))
        result = reply.body.get("result")
        return result if isinstance(result, dict) else {}

    async def _listen(self) -> None:
        """Read this replica's channel: commands from other replicas, and replies."""
        while True:  # connect the subscription (lazily created, Redis may be away)
            try:
                await self._sub.ping()
                break
            except GlideError:
                await trio.sleep(SUBSCRIBE_RETRY_S)
        while True:
            try:
                message = await self._sub.get_pubsub_message()
            except GlideError as exc:
                log.warning("control plane: subscription failed (%s); retrying", exc)
                await trio.sleep(SUBSCRIBE_RETRY_S)
                continue
            try:
                body = json.loads(message.message)
            except ValueError:
                log.warning("control plane: unreadable message on %s", _channel(self._me))
                continue
            if not isinstance(body, dict):
                continue
            if "op" in body:
                self._handle(body)
            else:
                reply = self._replies.get(str(body.get("nonce")))
                if reply is not None:
                    reply.body = body
                    reply.done.set()

    def _handle(self, command: dict[str, Any]) -> None:
        """Act on a command another replica routed here for its caller, as a local
        request of that caller would be, and publish the answer. Synchronous up to the
        publish, as a local request is."""
        op, session_id = command.get("op"), str(command.get("id"))
        answer: dict[str, object] = {"nonce": command.get("nonce")}
        key_id = command.get("caller")
        caller = self._owner(key_id if isinstance(key_id, str) else "")
        try:
            if isinstance(key_id, str) and key_id and caller.key is None:
                # A key this replica does not know (configs differ): it sees nothing
                # here, rather than everything as the keyless local user would.
                raise unknown_session(session_id)
            if op == "interrupt":
                reason = str(command.get("reason", "interrupt"))
                answer["result"] = interrupt_here(
                    self.manager, session_id, caller, reason, trio.current_time()
                )
            elif op == "get":
                answer["result"] = self._local(self.manager.get(session_id, caller))
            elif op == "delete":
                answer["result"] = delete_here(self.manager, session_id, caller)
            elif op == "release":
                session = self.manager.sessions.get(session_id)
                if session is not None and not session.attached:
                    self.manager.remove(session)  # attached on the replica that claimed it
                return
            else:
                raise ClientError(ErrorCode.INVALID_MESSAGE, f"unknown op {op!r}")
        except ClientError as error:
            answer["error"] = {"code": str(error.code), "message": error.message}
        except Exception:
            log.exception("control plane: %s of session %s failed", op, session_id)
            answer["error"] = {"code": str(ErrorCode.INTERNAL_ERROR), "message": "failed"}
        reply_to = command.get("reply")
        if isinstance(reply_to, str):
            self._soon(self._cmd.publish(json.dumps(answer), reply_to))
