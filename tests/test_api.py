import sessionrec as sr


def test_public_names_resolve() -> None:
    for name in sr.__all__:
        assert getattr(sr, name) is not None, name
    assert callable(sr.prepare) and callable(sr.load)
