"""stats.py: the counters add, the host book keeps the worst hosts, size buckets."""

from __future__ import annotations

from collections import Counter

from fetchshard.stats import (
    HOSTS_KEPT,
    SAMPLES,
    HostCounts,
    Stats,
    size_bucket,
    size_bucket_label,
    worst_hosts,
)


def test_rows_are_counted_by_status_type_size_and_host() -> None:
    stats = Stats()
    stats.count_row(None, 100_000, http_status=200, content_type="Image/JPEG; q=1", host="a")
    stats.count_row(None, 0, http_status=204, host="a")
    stats.count_row("http_404", None, http_status=404, host="b", url="u1", message="HTTP 404")
    stats.count_row("timeout", None, host="b", url="u2", message=None)
    stats.count_throttled("c", 12.5, True)
    stats.count_throttled("c", 0.0, False)  # nothing happened: no entry change
    assert (stats.items, stats.ok, stats.failed, stats.bytes) == (4, 2, 2, 100_000)
    assert stats.http_status == Counter({"200": 1, "204": 1, "404": 1})
    assert stats.content_types == Counter({"image/jpeg": 1})
    assert stats.sizes == Counter({str(size_bucket(100_000)): 1, "0": 1})
    assert set(stats.hosts) == {"b", "c"}  # a success leaves no host entry
    b = stats.hosts["b"]
    assert b.failures == 2 and b.errors == Counter({"http_404": 1, "timeout": 1})
    assert b.samples == [("u1", "HTTP 404"), ("u2", "timeout")]
    assert stats.hosts["c"].parked_s == 12.5 and stats.hosts["c"].throttled == 1


def test_stats_add_and_round_trip() -> None:
    one, two = Stats(), Stats()
    for i in range(5):
        one.count_row("http_404", None, http_status=404, host="h", url=f"a{i}", message="m")
        two.count_row("http_404", None, http_status=404, host="h", url=f"b{i}", message="m")
    total = one + two
    assert total.failed == 10 and total.http_status == Counter({"404": 10})
    assert total.hosts["h"].failures == 10 and len(total.hosts["h"].samples) == SAMPLES
    assert one.hosts["h"].failures == 5  # adding changes neither side
    again = Stats.from_dict(total.to_dict())
    assert again.to_dict() == total.to_dict()
    assert again.hosts["h"] == total.hosts["h"]


def test_a_document_keeps_the_worst_hosts() -> None:
    hosts = {f"f{i:03d}": HostCounts(failures=i) for i in range(1, 100)}
    hosts |= {f"p{i:03d}": HostCounts(parked_s=float(i)) for i in range(1, 100)}
    kept = worst_hosts(hosts)
    assert len(kept) == 2 * HOSTS_KEPT
    assert min(kept[h].failures for h in kept if h.startswith("f")) == 100 - HOSTS_KEPT
    assert min(kept[h].parked_s for h in kept if h.startswith("p")) == 100 - HOSTS_KEPT


def test_size_buckets_are_powers_of_two() -> None:
    assert [size_bucket(n) for n in (0, 1, 2, 3, 4, 1023, 1024)] == [0, 1, 2, 2, 3, 10, 11]
    assert size_bucket_label(0) == "0 B" and size_bucket_label(11) == "1 KiB-2 KiB"
    assert size_bucket_label(17) == "64 KiB-128 KiB"
    assert size_bucket(10**15) == 40 and size_bucket_label(40).startswith(">= ")
