"""Validates X-Ray segment documents (one JSON document per stdin line) against AWS's schema."""
import json
import sys

import jsonschema

schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft4Validator(schema)
failed = 0
for n, line in enumerate(sys.stdin, 1):
    if not line.strip():
        continue
    doc = json.loads(line)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        failed += 1
        print(f"document {n}: {'/'.join(map(str, e.path)) or '(root)'}: {e.message}")
        print(f"  {line.strip()[:400]}")
sys.exit(1 if failed else 0)
