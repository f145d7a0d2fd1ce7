"""Parse Prometheus text exposition from stdin with prometheus_client's parser (which rejects
malformed input) and print the samples as JSON: [[name, {labels}, value], ...]."""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
samples = []
families = 0
for family in text_string_to_metric_families(text):
    families += 1
    for s in family.samples:
        v = s.value
        samples.append([s.name, s.labels, None if math.isnan(v) else ("+Inf" if v == math.inf else v)])
if families == 0:
    sys.exit("no metric families parsed")
json.dump(samples, sys.stdout)
