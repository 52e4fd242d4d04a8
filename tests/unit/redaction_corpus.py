"""The redaction corpus (issue 23): log lines and JSON values holding a secret, by the class of secret that
docs/ai-worker.md ("Redaction") promises to remove. Each entry is (class, text, secrets): none of the
secrets may survive redaction. The classes the worker does NOT promise are listed in the docs and in
NOT_PROMISED below (kept so that a change that starts catching one is noticed and documented).

Built from templates x secret values, so that every template meets secrets with the characters that broke
the patterns of old: '@', ':', '/', '#', '%', '!', '$', quotes, backslashes and non-ASCII.
"""
import base64
import json

# Secret values: plain, holding '@', ':' and '/', shell and URL specials, non-ASCII.
SECRETS = ["Hunter2Zeta9", "p@ss:w0rd/X1", "S3cr3t!$#%Q", "Pässwörd-Ünï7"]
URL_SECRETS = ["Hunter2Zeta9", "p@ssW0rdQ7", "S3cr3t!$Q", "t0k3n_with-dash"]  # shapes URLs carry unencoded

TEMPLATES = [
    # URL credentials, with and without a user name; passwords holding '@'.
    ("url", "redis://:{s}@cache01:6379/0"),
    ("url", "connecting to postgres://app:{s}@db01.example:5432/shop"),
    ("url", "amqp://guest:{s}@rabbitmq:5672// refused"),
    ("url", "git clone https://deploy:{s}@gitlab.example/app.git"),
    ("url", "proxy=http://user:{s}@10.0.0.1:3128"),
    # key=value, key: value, JSON "key": "value", env variables and camelCase keys.
    ("key-value", "PGPASSWORD={s} psql -h db01 -U app"),
    ("key-value", "env MYSQL_PWD={s} mysqldump shop"),
    ("key-value", "export DB_PASSWORD='{s}'"),
    ("key-value", "ldapbind userPassword={s} dn=cn=admin"),
    ("key-value", 'config {{"dbPassword": "{s}", "host": "db01"}}'),
    ("key-value", '{{"user": "bob", "adminPass": "{s}"}}'),
    ("key-value", "redis.auth.password: {s}"),
    ("key-value", "spring.datasource.password={s}"),
    ("key-value", "client_secret={s}&grant_type=client_credentials"),
    ("key-value", '"message": "{{\\"user\\": \\"bob\\", \\"password\\": \\"{s}\\"}}"'),
    ("key-value", "wifi passphrase: \"{s}\""),
    ("key-value", "set SMTP_PASS={s}"),
    ("key-value", "AccessToken={s};"),
    # command lines: mysql -p, sshpass -p, curl -u, --password flags.
    ("cli", "mysql -uroot -p{s} -h db01 shop"),
    ("cli", "mysqldump -u backup -p'{s}' --all-databases"),
    ("cli", "/usr/bin/mariadb --user=root -p{s} -e 'show databases'"),
    ("cli", "sshpass -p '{s}' ssh admin@10.0.0.9"),
    ("cli", "sshpass -p{s} scp file root@host:/tmp"),
    ("cli", "curl -u admin:{s} https://api.example/v1"),
    ("cli", "curl --user 'svc:{s}' -X POST http://10.0.0.2/hook"),
    ("cli", "net use \\\\fs01\\share /user:CORP\\bob --password {s}"),
    ("cli", "openssl pkcs12 -passin pass:{s} -in cert.p12"),
    # headers.
    ("header", "Authorization: Basic {b}"),
    ("header", "X-Api-Key: {s}"),
    ("header", "Proxy-Authorization: Bearer {s}"),
    # XML.
    ("xml", "<Password>{s}</Password>"),
    ("xml", "<userPassword>{s}</userPassword>"),
]

TOKENS = [  # fixed token shapes (each is the secret)
    ("token", "aws key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
    ("token", "token ghp_1234567890abcdefghijABCDEFGHIJ123456 pushed", "ghp_1234567890abcdefghijABCDEFGHIJ123456"),
    ("token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz in .env", "github_pat_11ABCDEFG0123456789"),
    ("token", "SLACK xoxb-1234567890-0987654321-AbCdEfGhIjKl", "xoxb-1234567890-0987654321"),
    ("token", "key=AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
    ("token", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc charged", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("token", "OPENAI sk-proj-abcdefghijklmnopqrstuvwxyz012345", "sk-proj-abcdefghijklmnopqrstuvwxyz012345"),
    ("token", "cookie jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
]

PRIVATE_KEYS = [
    ("private-key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq1nB3kZ0Lr9xQ2\n-----END RSA PRIVATE KEY-----",
     "MIIEpAIBAAKCAQEA7bq1nB3kZ0Lr9xQ2"),
    ("private-key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU (truncated",
     "b3BlbnNzaC1rZXkt"),
    ("private-key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGRz5xIBCADKq3nQ8pXbT0Zz\n=a1b2\n"
     "-----END PGP PRIVATE KEY BLOCK-----", "lQOYBGRz5xIBCADKq3nQ8pXbT0Zz"),
    ("private-key", "gpg --export-secret-keys: -----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n"
     "lQdGBF4hKz0BEADZ1wq0 (cut", "lQdGBF4hKz0BEADZ1wq0"),
    ("private-key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkq\n"
     "-----END ENCRYPTED PRIVATE KEY-----", "MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkq"),
]


def _basic(secret):
    return base64.b64encode(f"admin:{secret}".encode()).decode()


def text_corpus():
    """(class, text, [secrets]) for every line of the text corpus."""
    lines = []
    for kind, template in TEMPLATES:
        values = URL_SECRETS if kind == "url" else SECRETS
        for secret in values:
            if "{b}" in template:
                encoded = _basic(secret)
                lines.append((kind, template.format(b=encoded), [encoded]))
            else:
                lines.append((kind, template.format(s=secret), [secret]))
    lines += [(kind, text, [secret]) for kind, text, secret in TOKENS + PRIVATE_KEYS]
    return lines


def json_corpus():
    """(class, JSON value, [secrets]): secrets as values under secret keys, and secrets used as JSON keys."""
    values = []
    for secret in SECRETS:
        values.append(("json-value", {"user": "bob", "userPassword": secret}, [secret]))
        values.append(("json-value", {"data": {"PGPASSWORD": secret, "host": "db01"}}, [secret]))
        values.append(("json-value", {"dbPassword": {"value": secret}}, [secret]))
        values.append(("json-key", {"credentials": {f"admin:{secret}@db01": "ok"}}, [secret]))
        values.append(("json-key", {"data": {f"password={secret}": True}}, [secret]))
    for _kind, text, secret in TOKENS:
        token = next(word for word in text.split() if secret in word or word in secret)
        values.append(("json-key", {"tokens": {token.partition("=")[2] or token: "user1"}}, [secret]))
    values.append(("json-key", {"seen": {"Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0": 3}}, ["9f8e7d6c5b4a3928"]))
    return values


def corpus_size():
    return len(text_corpus()) + len(json_corpus())


# What the worker does not promise to find (docs/ai-worker.md, "Redaction", "Not promised").
NOT_PROMISED = [
    ("bare positional password", "net user bob P@ssw0rd123 /add", "P@ssw0rd123"),
    ("password in a free sentence", "the new password is Hunter2Zeta9 for bob", "Hunter2Zeta9"),
    ("secret under a neutral key", "config value=Hunter2Zeta9 (the db password)", "Hunter2Zeta9"),
    ("URL-encoded credentials in a query", "GET /login?u=bob&p=Hunter2Zeta9", "Hunter2Zeta9"),
    ("a hash or a key without a known shape", "ntlm hash 8846f7eaee8fb117ad06bdd830b7586c", "8846f7eaee8fb117"),
]


if __name__ == "__main__":  # pragma: no cover - prints the corpus for review
    for entry in text_corpus():
        print(entry)
    for entry in json_corpus():
        print(json.dumps(entry))
