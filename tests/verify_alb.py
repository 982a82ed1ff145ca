"""Verifies an x-amzn-oidc-data JWT the way AWS documents for ALB: take `kid` from the header,
fetch the PEM public key by kid, verify ES256 with PyJWT + cryptography. Also verifies it
against the JWKS. Prints the verified payload as JSON.

usage: verify_alb.py PUBLIC_KEY_URL_FOR_KID JWKS_URL TOKEN
"""
import base64
import json
import sys
import urllib.request

import jwt  # PyJWT


def main() -> int:
    key_url, jwks_url, token = sys.argv[1], sys.argv[2], sys.argv[3]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=" * (-len(token.split(".")[0]) % 4)))
    assert header["alg"] == "ES256", header
    pem = urllib.request.urlopen(key_url).read().decode()
    payload = jwt.decode(token, key=pem, algorithms=["ES256"], options={"verify_aud": False})
    jwks = json.loads(urllib.request.urlopen(jwks_url).read())
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    key = jwt.PyJWK(jwk).key
    again = jwt.decode(token, key=key, algorithms=["ES256"], options={"verify_aud": False})
    assert again == payload
    print(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
