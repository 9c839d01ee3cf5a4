"""
Password files for the tests of L{netproxy.http.passwords} and
L{netproxy.http.auth}: two users, one with a bcrypt hash and one with a
SHA-crypt hash.
"""

import bcrypt

# Cost 4, the least bcrypt allows: these tests are about the logic, not the cost.
ALICE_HASH = bcrypt.hashpw(b"alice's secret", bcrypt.gensalt(4)).decode("ascii").replace("$2b$", "$2y$", 1)
# From Drepper's specification: "Hello world!" with salt "saltstring".
CAROL_HASH = ("$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOf"
              "aS35inz1")
USERS = f"# proxy users\nalice:{ALICE_HASH}\n\ncarol:{CAROL_HASH}\n"
