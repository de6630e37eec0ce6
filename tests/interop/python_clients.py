"""Python clients nobody here wrote, against a running Tidings: requests
(publish, poll), sseclient-py (SSE with Last-Event-ID resume) and websockets
(the realtime seed's protocol). Usage: python_clients.py BASE_URL. Exits
non-zero with a message on the first mismatch.

With `--auth ADMIN_TOKEN USER_TOKEN` (a server verifying HS256 JWTs, anonymous
access off; USER_TOKEN's `sub` is `alice`) it checks the same clients with
credentials instead: bearer headers, `?token=` on EventSource-style SSE and
on the WebSocket, 401 without them, and per-user delivery."""
import asyncio
import json
import sys
import threading
import time

import requests
import sseclient
import websockets

BASE = sys.argv[1]
WS = BASE.replace("http://", "ws://") + "/ws"


def check(cond, what):
    if not cond:
        sys.exit("FAILED: " + what)


def publish(stream, i):
    r = requests.post(BASE + "/api/v1/events",
                      json={"type": "py.test", "stream_id": stream, "message": "m%d" % i, "data": {"i": i}})
    check(r.status_code == 201, "publish answered %d %s" % (r.status_code, r.text))
    return r.json()["id"]


def wait_clients(stream, n):
    deadline = time.time() + 10
    while time.time() < deadline:
        info = requests.get(BASE + "/api/v1/events/streams").json()["data"].get(stream, {})
        if info.get("clients", 0) >= n:
            return
        time.sleep(0.02)
    sys.exit("FAILED: no SSE reader registered on %s" % stream)


def read_sse(stream, n, out, last_event_id=None):
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    r = requests.get(BASE + "/api/v1/events/stream/" + stream, stream=True, headers=headers, timeout=10)
    check(r.headers["Content-Type"] == "text/event-stream", "content type " + r.headers["Content-Type"])
    for ev in sseclient.SSEClient(r).events():
        out.append((ev.id, json.loads(ev.data)))
        if len(out) == n:
            r.close()
            return


def sse():
    got = []
    t = threading.Thread(target=read_sse, args=("py", 3, got))
    t.start()
    wait_clients("py", 1)
    ids = [publish("py", i) for i in range(3)]
    t.join(10)
    check([i for i, _ in got] == ids, "SSE ids %s, want %s" % (got, ids))
    check([e["message"] for _, e in got] == ["m0", "m1", "m2"], "SSE events %s" % got)
    check(all(e["id"] == i for i, e in got), "id line equals the event id")
    more = [publish("py", i) for i in range(3, 5)]
    resumed = []
    read_sse("py", 2, resumed, last_event_id=ids[-1])
    check([i for i, _ in resumed] == more, "resume with Last-Event-ID gave %s, want %s" % (resumed, more))
    return ids + more


async def ws(ids):
    async with websockets.connect(WS) as s:
        hello = json.loads(await s.recv())
        check(hello["type"] == "system:connected", "greeting %s" % hello)
        await s.send(json.dumps({"type": "system:ping"}))
        check(json.loads(await s.recv())["type"] == "system:pong", "pong")
        await s.send(json.dumps({"type": "room:join", "payload": {"room": "py", "after": "0"}}))
        joined = json.loads(await s.recv())
        check(joined == {"type": "room:joined", "payload": {"room": "py", "cursor": "0"}}, "joined %s" % joined)
        for want, i in zip(ids, range(5)):
            m = json.loads(await asyncio.wait_for(s.recv(), 10))
            check(m["type"] == "py.test" and m["id"] == want and m["payload"] == {"i": i}, "frame %s" % m)
        await s.send("not json")
        err = json.loads(await s.recv())
        check(err["type"] == "system:error" and err["payload"]["code"] == "invalid_json", "error %s" % err)


def poll(ids):
    r = requests.get(BASE + "/api/v1/events", params={"streams": "py", "after": "0", "limit": 2})
    body = r.json()
    check([e["id"] for e in body["events"]] == ids[:2] and body["cursor"] == ids[1], "poll %s" % body)
    r = requests.get(BASE + "/api/v1/events", params={"after": "abc"})
    check(r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor", "bad cursor %s" % r.text)


def auth_checks(admin, user):
    r = requests.post(BASE + "/api/v1/events", json={"type": "py.auth", "stream_id": "pa"})
    check(r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
          and r.headers.get("WWW-Authenticate", "").startswith("Bearer"), "anonymous publish %d %s" % (r.status_code, r.text))
    as_admin = {"Authorization": "Bearer " + admin}

    def send(body):
        r = requests.post(BASE + "/api/v1/events", json=body, headers=as_admin)
        check(r.status_code == 201, "admin publish %d %s" % (r.status_code, r.text))
        return r.json()["id"]

    r = requests.post(BASE + "/api/v1/events", json={"type": "py.auth", "stream_id": "pa"},
                      headers={"Authorization": "Bearer " + user})
    check(r.status_code == 403 and r.json()["error"]["code"] == "forbidden", "USER publish %d %s" % (r.status_code, r.text))
    public = send({"type": "py.auth", "stream_id": "pa", "message": "public"})
    send({"type": "py.auth", "stream_id": "pa", "user_id": "bob", "message": "for bob"})
    mine = send({"type": "py.auth", "stream_id": "pa", "user_id": "alice", "message": "for alice"})
    # EventSource cannot set headers: the token rides in the query string.
    r = requests.get(BASE + "/api/v1/sse", params={"streams": "pa", "after": "0", "token": user},
                     stream=True, headers={"Accept": "text/event-stream"}, timeout=10)
    check(r.status_code == 200, "SSE with ?token= answered %d" % r.status_code)
    got = []
    for ev in sseclient.SSEClient(r).events():
        got.append(ev.id)
        if len(got) == 2:
            r.close()
            break
    check(got == [public, mine], "alice's SSE gave %s, want %s" % (got, [public, mine]))
    r = requests.get(BASE + "/api/v1/sse", params={"streams": "pa"}, timeout=10)
    check(r.status_code == 401, "anonymous SSE answered %d" % r.status_code)

    async def sockets():
        try:
            async with websockets.connect(WS):
                sys.exit("FAILED: anonymous WebSocket was accepted")
        except Exception as e:  # InvalidStatus (websockets >= 14) or InvalidStatusCode
            check("401" in str(e), "anonymous WebSocket refused with %r" % e)
        async with websockets.connect(WS + "?token=" + user) as s:
            hello = json.loads(await s.recv())
            check(hello["type"] == "system:connected" and hello["payload"]["user_id"] == "alice", "greeting %s" % hello)
            joined = json.loads(await s.recv())
            check(joined["type"] == "room:joined" and joined["payload"]["room"] == "user:alice", "own room %s" % joined)
            await s.send(json.dumps({"type": "room:join", "payload": {"room": "user:bob"}}))
            err = json.loads(await s.recv())
            check(err["type"] == "system:error" and err["payload"]["code"] == "forbidden", "bob's room %s" % err)
            sent = send({"type": "booking:confirmed", "stream_id": "user:alice", "data": {"booking_id": "b1"}})
            m = json.loads(await asyncio.wait_for(s.recv(), 10))
            check(m["type"] == "booking:confirmed" and m["id"] == sent and m["payload"] == {"booking_id": "b1"}, "send-to-user %s" % m)

    asyncio.run(sockets())


if len(sys.argv) > 2 and sys.argv[2] == "--auth":
    auth_checks(sys.argv[3], sys.argv[4])
else:
    ids = sse()
    asyncio.run(ws(ids))
    poll(ids)
print("python clients: all checks passed")
