"""Python clients nobody here wrote, against a running Tidings: requests
(publish, poll), sseclient-py (SSE with Last-Event-ID resume) and websockets
(the realtime seed's protocol). Usage: python_clients.py BASE_URL. Exits
non-zero with a message on the first mismatch."""
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


ids = sse()
asyncio.run(ws(ids))
poll(ids)
print("python clients: all checks passed")
