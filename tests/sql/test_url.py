"""The --store value: what is accepted, what is refused, and that the password never shows."""

import pytest

from agentflow.cluster.sql.url import StoreUrl, parse_store, redact_text
from agentflow.errors import ConfigError

SECRET = "s3cr3tPW"


def test_sqlite_is_the_embedded_store() -> None:
    assert parse_store("sqlite") is None


def test_a_full_postgresql_url() -> None:
    url = parse_store(f"postgresql://app:{SECRET}@db.example.com:6432/flows?sslmode=verify-full")
    assert url == StoreUrl(
        dialect="postgresql",
        host="db.example.com",
        port=6432,
        database="flows",
        user="app",
        password=SECRET,
        params=(("sslmode", "verify-full"),),
    )
    assert url.redacted() == "postgresql://app:***@db.example.com:6432/flows?sslmode=verify-full"


@pytest.mark.parametrize(
    ("text", "dialect", "port"),
    [
        ("postgresql://u@h/db", "postgresql", 5432),
        ("postgres://u@h/db", "postgresql", 5432),
        ("mysql://u@h/db", "mysql", 3306),
        ("mariadb://u@h/db", "mysql", 3306),
        ("MariaDB://u@h:3307/db", "mysql", 3307),
    ],
)
def test_schemes_and_default_ports(text: str, dialect: str, port: int) -> None:
    url = parse_store(text)
    assert url is not None
    assert (url.dialect, url.port, url.password) == (dialect, port, None)


def test_ipv6_host_and_no_user() -> None:
    url = parse_store("postgresql://[::1]:5433/db")
    assert url is not None
    assert (url.host, url.port, url.user) == ("::1", 5433, None)
    assert url.redacted() == "postgresql://[::1]:5433/db"


def test_percent_encoded_user_password_and_database() -> None:
    url = parse_store("mysql://a%40b:p%2Fw%3A%40@h/my%2Ddb")
    assert url is not None
    assert (url.user, url.password, url.database) == ("a@b", "p/w:@", "my-db")
    assert url.redacted() == "mysql://a%40b:***@h:3306/my-db"


def test_password_given_apart_from_the_url() -> None:
    url = parse_store("postgresql://u@h/db", password=SECRET)
    assert url is not None
    assert url.password == SECRET
    assert url.redacted() == "postgresql://u:***@h:5432/db"


def test_the_password_never_shows_in_repr_or_str() -> None:
    url = parse_store(f"postgresql://u:{SECRET}@h/db")
    assert url is not None
    assert SECRET not in repr(url)
    assert SECRET not in str(url)
    assert SECRET not in f"{url}"


REFUSED = [
    # unknown scheme or none
    ("redis://u:{pw}@h/db", "expected sqlite"),
    ("postgresql:/u:{pw}@h/db", "expected sqlite"),
    ("u:{pw}@h/db", "expected sqlite"),
    ("sqlite3", "expected sqlite"),
    ("", "expected sqlite"),
    # no database
    ("postgresql://u:{pw}@h", "no database"),
    ("postgresql://u:{pw}@h/", "no database"),
    ("postgresql://u:{pw}@h:5432", "no database"),
    ("mysql://u:{pw}@h/a/b", "one database"),
    ("mysql://u:{pw}@h/" + "d" * 64, "1 to 63"),
    ("mysql://u:{pw}@h/a%27b", "quotes"),
    ("mysql://u:{pw}@h/%zz", "%XX"),
    # bad port or host
    ("postgresql://u:{pw}@h:0/db", "port"),
    ("postgresql://u:{pw}@h:65536/db", "port"),
    ("postgresql://u:{pw}@h:-1/db", "port"),
    ("postgresql://u:{pw}@h:abc/db", "port"),
    ("postgresql://u:{pw}@h:/db", "port"),
    ("postgresql://u:{pw}@h:٣/db", "port"),
    ("postgresql://u:{pw}@/db", "host"),
    ("postgresql://u:{pw}@:5432/db", "host"),
    ("postgresql://u:{pw}@h!x/db", "host"),
    ("postgresql://u:{pw}@[::1]x/db", "after ']'"),
    # user information oddities
    ("postgresql://:{pw}@h/db", "no user"),
    ("postgresql://@h/db", "no user"),
    ("postgresql://u:@h/db", "empty password"),
    ("postgresql://u:{pw}@x@h/db", "percent-encode"),
    ("postgresql://u:a/{pw}@h/db", "percent-encode"),
    ("postgresql://u:a?{pw}@h/db", "percent-encode"),
    ("postgresql://u:a#{pw}@h/db", "percent-encode"),
    ("postgresql://u:{pw}%zz@h/db", "%XX"),
    ("postgresql://u:{pw}%00@h/db", "control"),
    ("postgresql://u:{pw} x@h/db", "spaces"),
    # parameters
    ("postgresql://u:{pw}@h/db?sslmode=sometimes", "sslmode needs one of"),
    ("postgresql://u:{pw}@h/db?sslmode", "sslmode needs"),
    ("postgresql://u:{pw}@h/db?sslmode=require&sslmode=disable", "twice"),
    ("postgresql://u:{pw}@h/db?ssl_ca=/x", "unknown parameter"),
    ("mysql://u:{pw}@h/db?sslmode=require", "unknown parameter"),
    ("mysql://u:{pw}@h/db#frag", "fragment"),
]


@pytest.mark.parametrize(("template", "says"), REFUSED)
def test_refused_with_one_line_that_hides_the_password(template: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_store(template.format(pw=SECRET))
    message = str(caught.value)
    assert says in message
    assert SECRET not in message
    assert "\n" not in message


def test_a_password_in_the_url_and_apart_is_refused() -> None:
    with pytest.raises(ConfigError, match="keep one") as caught:
        parse_store(f"postgresql://u:{SECRET}@h/db", password="other")
    assert SECRET not in str(caught.value)
    assert "other" not in str(caught.value)


def test_an_overlong_url_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigError, match="longer than") as caught:
        parse_store(f"postgresql://u:{SECRET}@h/" + "d" * 5000)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u:{pw}@h/db",
        "postgresql://u:a/b{pw}@h/db",
        "postgresql://u:{pw}@h/db?sslrootcert=/a@b",
        "mysql://u:x@y{pw}@h/db",
    ],
)
def test_redact_text_hides_whatever_sits_before_the_last_at(text: str) -> None:
    assert SECRET not in redact_text(text.format(pw=SECRET))
