#!/usr/bin/python3
"""`tideserve bench` against wrk on the same server in the same run: closed loops of the same
connections and the same /embed body, alternated (wrk, bench, wrk, bench) so that drift on a
shared machine falls on both. Prints each run and the ratio of the medians; exits 1 when the
throughputs are more than 10% apart.

    /usr/bin/python3 bench/server/bench_vs_wrk.py --tideserve build/release/tideserve \\
        [--model models/tideserve-tiny-zh] [--connections 8] [--seconds 5] [--rounds 2]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

BODY = json.dumps({"inputs": ["今天天气很好，我们去公园散步吧"]}, ensure_ascii=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tideserve", required=True)
    parser.add_argument("--model", default=os.path.join("models", "tideserve-tiny-zh"))
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server = subprocess.Popen([args.tideserve, "serve", "--model", args.model, "--host",
                               "127.0.0.1", "--port", "0", "--drain-delay", "0"],
                              stdout=subprocess.PIPE, text=True)
    port = None
    for line in server.stdout:
        event = json.loads(line)
        if event.get("event") == "listening":
            port = event["port"]
        if event.get("event") == "serving":
            break
    url = "http://127.0.0.1:%d" % port
    # The body as a Lua long string: raw UTF-8 (LuaJIT has no unicode escapes).
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, encoding="utf-8") as lua:
        lua.write('wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = '
                  '"application/json"\n' % BODY)
    wrk_rates, bench_rates, wrk_failed = [], [], False
    try:
        for _ in range(args.rounds):
            out = subprocess.run(["wrk", "-t", "1", "-c", str(args.connections), "-d",
                                  "%ds" % args.seconds, "-s", lua.name, url + "/embed"],
                                 capture_output=True, text=True, check=True).stdout
            rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            wrk_rates.append(rate)
            wrk_failed = wrk_failed or errors is not None
            print("wrk    %8.1f req/s%s" % (rate, " (%s non-2xx)" % errors.group(1) if errors
                                            else ""))
            with tempfile.NamedTemporaryFile(suffix=".json") as js:
                subprocess.run([args.tideserve, "bench", "--url", url, "--route", "/embed",
                                "-c", str(args.connections), "--duration", str(args.seconds),
                                "--json", js.name, "--quiet"], check=True,
                               stdout=subprocess.DEVNULL)
                summary = json.load(open(js.name))
            bench_rates.append(summary["throughput"])
            print("bench  %8.1f req/s (p50 %.2f ms, p99 %.2f ms, %d errors)" % (
                summary["throughput"], summary["p50_ms"], summary["p99_ms"], summary["errors"]))
    finally:
        os.unlink(lua.name)
        server.terminate()
        server.wait(60)
    ratio = statistics.median(bench_rates) / statistics.median(wrk_rates)
    print("tideserve bench / wrk throughput (medians of %d): %.3f" % (args.rounds, ratio))
    if wrk_failed:
        print("wrk got non-2xx answers: the two did not send the same requests")
        return 1
    return 0 if 0.9 <= ratio <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
