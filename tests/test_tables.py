"""Real tables: column roles learned on the training rows (data.columns.TableEncoder), kept
in the model file, applied by predict by name; the library and the command line."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.cli.main import main

pd = pytest.importorskip("pandas")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _frame():
    return pd.DataFrame(
        {
            "size": [1.0, np.nan, 3.0, 10.0, np.nan, 6.0],
            "colour": ["red", "blue", None, "red", "green", "blue"],
            "flag": [True, False, True, True, False, False],
            "id": [f"row{i}" for i in range(6)],
        }
    )


# -- the encoder ---------------------------------------------------------------------------
def test_numeric_fill_is_the_training_median_with_a_flag_column():
    df = _frame()
    enc = dg.TableEncoder.fit(df[["size"]])
    (col,) = enc.columns
    assert col.fill == np.median([1.0, 3.0, 10.0, 6.0]) == 4.5 and col.indicator
    X = enc.transform(pd.DataFrame({"size": [np.nan, 2.0, "NA"]}))
    np.testing.assert_array_equal(X, [[4.5, 1.0], [2.0, 0.0], [4.5, 1.0]])
    assert enc.feature_names == ("size", "size (missing)")
    assert dg.TableEncoder.fit(df[["size"]], missing="mean").columns[0].fill == 5.0


def test_text_and_booleans_are_one_hot_with_missing_as_its_own_category():
    df = _frame()
    enc = dg.TableEncoder.fit(df[["colour", "flag"]])
    assert enc.feature_names == (
        "colour=blue",
        "colour=green",
        "colour=red",
        "colour=(missing)",
        "flag=False",
        "flag=True",
    )
    X = enc.transform(df)
    assert X.shape == (6, 6) and np.all(X.sum(axis=1) == 2)  # one hot per column
    np.testing.assert_array_equal(X[2], [0, 0, 0, 1, 0, 1])  # None: the missing category


def test_an_unseen_category_is_zeros_with_one_warning_naming_column_and_values():
    enc = dg.TableEncoder.fit(pd.DataFrame({"c": ["a", "b", "a"]}))
    new = pd.DataFrame({"c": ["a", "zebra", "yak", "zebra", ""]})
    with pytest.warns(dg.UnseenCategoryWarning) as record:
        X = enc.transform(new)
    assert len(record) == 1
    message = str(record[0].message)
    assert "column 'c'" in message and "'yak', 'zebra'" in message and "4 row(s)" in message
    assert "1 missing cell(s)" in message  # training had no missing cell: unseen too
    np.testing.assert_array_equal(X, [[1, 0], [0, 0], [0, 0], [0, 0], [0, 0]])


def test_ids_constants_and_empty_columns_are_dropped_with_the_reason():
    m = 50
    df = pd.DataFrame(
        {
            "x": np.arange(m, dtype=float),
            "name": [f"person {i}" for i in range(m)],
            "const": ["k"] * m,
            "empty": [None] * m,
            "one": [2.0] * m,
        }
    )
    enc = dg.TableEncoder.fit(df)
    assert enc.input_names == ("x",)
    why = dict(enc.dropped)
    assert why["name"].startswith("50 distinct text values in 50 rows")
    assert "--categorical name" in why["name"]
    assert why["const"].startswith("constant") and why["one"].startswith("constant")
    assert why["empty"].startswith("every cell is missing")
    kept = dg.TableEncoder.fit(df, categorical=["name"])
    assert kept.width == 1 + m
    with pytest.raises(ValueError, match="every column of X would be dropped"):
        dg.TableEncoder.fit(df[["const", "empty"]], source="X")
    with pytest.raises(ValueError, match=r"categorical column\(s\) \['nope'\]"):
        dg.TableEncoder.fit(df, categorical=["nope"])


def test_a_few_stray_tokens_in_a_numeric_column_are_read_as_missing():
    cells = [str(v) for v in range(40)] + ["?", "?"]
    enc = dg.TableEncoder.fit(pd.DataFrame({"hp": cells}))
    (col,) = enc.columns
    assert col.kind == "numeric" and col.missing_tokens == ("?",) and col.indicator
    assert enc.notes == ("column 'hp': 2 cell(s) '?' in a column of numbers read as missing",)
    X = enc.transform(pd.DataFrame({"hp": ["?", "5"]}))
    np.testing.assert_array_equal(X, [[col.fill, 1.0], [5.0, 0.0]])
    with pytest.raises(ValueError, match=r"column 'hp' of the data holds 'many' at row 1"):
        enc.transform(pd.DataFrame({"hp": ["1", "many"]}))


def test_transform_picks_columns_by_name_and_names_the_missing_ones():
    df = _frame()
    enc = dg.TableEncoder.fit(df[["size", "colour"]])
    shuffled = df[["id", "colour", "flag", "size"]]  # another order, extra columns
    np.testing.assert_array_equal(enc.transform(shuffled), enc.transform(df))
    with pytest.raises(ValueError, match=r"lacks 1 column\(s\) the model was trained on: 'size'"):
        enc.transform(df[["colour"]])


def test_the_record_round_trips_through_json():
    enc = dg.TableEncoder.fit(_frame())
    back = dg.TableEncoder.from_record(json.loads(json.dumps(enc.to_record())))
    assert back.columns == enc.columns and back.dropped == enc.dropped
    df = _frame()
    np.testing.assert_array_equal(back.transform(df), enc.transform(df))


def test_a_date_column_is_years_and_the_day_of_the_year_on_a_circle():
    vega = pytest.importorskip("vega_datasets")
    weather = vega.local_data.seattle_weather()[["date", "temp_max"]]  # 2012-2015, daily
    text = weather.assign(date=weather["date"].dt.strftime("%Y-%m-%d"))  # as a CSV holds it
    text.loc[5, "date"] = "NA"
    enc = dg.TableEncoder.fit(text, lines=True)
    (col, _) = enc.columns
    assert col.kind == "date" and col.seasonal and col.indicator
    assert enc.feature_names[:4] == (
        "date (years)",
        "date (day of year, sin)",
        "date (day of year, cos)",
        "date (missing)",
    )
    X = enc.transform(text)
    # independently: 2012 is a leap year, 2012-07-01 is its day 183
    row = int(np.flatnonzero(text["date"] == "2012-07-01")[0])
    angle = 2 * np.pi * 182 / 366
    np.testing.assert_allclose(X[row, :4], [2012 + 182 / 366, np.sin(angle), np.cos(angle), 0])
    row = int(np.flatnonzero(text["date"] == "2013-12-31")[0])  # day 365 of 365
    np.testing.assert_allclose(
        X[row, 1:3], [np.sin(2 * np.pi * 364 / 365), np.cos(2 * np.pi * 364 / 365)]
    )
    known = X[np.arange(len(X)) != 5, 0]
    np.testing.assert_allclose(X[5, :4], [np.median(known), 0, 0, 1])  # the median, the centre
    # a datetime column (the library path) encodes as its text does
    from_datetimes = dg.TableEncoder.fit(weather).transform(weather)
    np.testing.assert_allclose(from_datetimes, dg.TableEncoder.fit(text.drop(5)).transform(weather))
    back = dg.TableEncoder.from_record(json.loads(json.dumps(enc.to_record())))
    assert enc.to_record()["version"] == 2 and back.columns == enc.columns
    with pytest.raises(ValueError, match=r"'date' .* holds 'yesterday' at line 3 .* as dates"):
        enc.transform(
            pd.DataFrame({"date": ["2014-01-01", "yesterday"], "temp_max": [1, 2]}), lines=True
        )


def test_dates_on_one_day_of_the_year_are_years_alone_and_false_dates_are_not_dates():
    years = pd.DataFrame({"Year": [f"{1970 + i % 12}-01-01" for i in range(60)]})
    (col,) = dg.TableEncoder.fit(years).columns
    assert col.kind == "date" and not col.seasonal and not col.indicator
    np.testing.assert_array_equal(
        dg.TableEncoder.fit(years).transform(years)[:3, 0], [1970, 1971, 1972]
    )
    assert dg.TableEncoder.fit(years, categorical=["Year"]).columns[0].kind == "category"
    looks_like = pd.DataFrame({"code": ["2012-13-45", "2012-01-01"] * 10})  # month 13
    assert dg.TableEncoder.fit(looks_like).columns[0].kind == "category"
    constant = pd.DataFrame({"d": ["2012-01-01"] * 5, "x": [1, 2, 3, 4, 5]})
    assert dg.TableEncoder.fit(constant).dropped == (
        ("d", "constant: every row holds the date 2012-01-01"),
    )


# -- the library ---------------------------------------------------------------------------
def _cars(year_as_text: bool = True):
    vega = pytest.importorskip("vega_datasets")
    with warnings.catch_warnings():  # vega_datasets' own call into pandas' read_json
        warnings.simplefilter("ignore")
        df = vega.data.cars()
    if year_as_text:  # a text column of 12 values ('1970', ...) in the DataFrame
        df["Year"] = df["Year"].dt.year.astype(str)
    return df


def test_network_fit_on_a_dataframe_with_text_and_nans_saves_and_predicts_by_name(tmp_path):
    df = _cars()
    y = df.pop("Origin").to_numpy().astype(str)
    assert df["Horsepower"].isna().sum() == 6 and df["Miles_per_Gallon"].isna().sum() == 8
    enc = dg.TableEncoder.fit(df)
    net = dg.Network([enc.width, 16, 3], output="softmax", seed=0)
    net.fit(df, y, standardize=True, epochs=40, seed=0, progress=False)
    assert net.preprocessing.columns is not None
    assert net.preprocessing.feature_names == enc.feature_names
    accuracy = np.mean(net.predict(df) == y)
    assert accuracy > 0.75  # the majority class is 0.62
    dg.save(net, tmp_path / "cars.npz")
    back = dg.load(tmp_path / "cars.npz")
    reordered = df[df.columns[::-1]].assign(extra=1.0)
    np.testing.assert_array_equal(back.predict(reordered), net.predict(df))
    np.testing.assert_allclose(back.predict_proba(reordered), net.predict_proba(df))
    with np.load(tmp_path / "cars.npz", allow_pickle=False) as z:  # no pickle needed
        meta = json.loads(str(z["__meta__"]))
    assert meta["version"] == 3 and meta["preprocessing"]["columns"]["version"] == 1


def test_a_network_of_the_wrong_width_is_told_the_encoded_width():
    df = _frame()
    net = dg.Network([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match=r"encode to 14 inputs .* layer_sizes\[0\] = 14"):
        net.fit(df, np.array([0, 1, 0, 1, 0, 1]), epochs=1, progress=False)


def test_validation_data_as_a_dataframe_goes_through_the_same_encoding():
    df = _cars()
    y = df.pop("Origin").to_numpy().astype(str)
    width = dg.TableEncoder.fit(df.iloc[:300]).width
    net = dg.Network([width, 8, 3], output="softmax", seed=0)
    h = net.fit(
        df.iloc[:300],
        y[:300],
        standardize=True,
        epochs=3,
        progress=False,
        validation_data=(df.iloc[300:], y[300:]),
    )
    assert len(h.val_cost) == 3 and np.all(np.isfinite(h.val_cost))


# -- the command line ----------------------------------------------------------------------
def _write_cars(path: Path) -> pd.DataFrame:
    df = _cars(year_as_text=False)
    df.to_csv(path, index=False)  # text kept (Year as '1970-01-01'), missing cells as ""
    return df


def test_train_and_predict_on_a_real_table_with_text_and_missing_cells(tmp_path, capsys):
    _write_cars(tmp_path / "cars.csv")
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "cars.csv"), "--target", "Origin", "--explain"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "columns: 7 columns used (6 numeric, 1 date, 0 one-hot) -> 9 inputs" in text
    assert any(ln.split()[:3] == ["Year", "date,", "as"] for ln in text.splitlines())
    assert "dropped 'Name'" in text and "Horsepower" in text
    assert any(line.split()[:2] == ["Name", "dropped:"] for line in text.splitlines())
    accuracy = float(text.split("held-out accuracy: ")[1].split()[0])
    assert accuracy > 0.7
    # predict: the columns in another order, the target and an extra column present
    df = pd.read_csv(tmp_path / "cars.csv")
    shuffled = df.assign(extra="x")[["extra", *df.columns[::-1]]]
    shuffled.to_csv(tmp_path / "new.csv", index=False)
    pred = tmp_path / "pred.csv"
    argv = ["predict", "--model", str(out / "model.npz"), "--data", str(tmp_path / "new.csv")]
    assert main([*argv, "--out", str(pred)]) == 0
    rows = list(csv.reader(pred.read_text().splitlines()))
    assert rows[0] == ["prediction", "P(Europe)", "P(Japan)", "P(USA)"]
    assert len(rows) == 1 + len(df)
    P = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-5)
    names = np.array(["Europe", "Japan", "USA"])
    assert [r[0] for r in rows[1:]] == list(names[P.argmax(axis=1)])


def test_a_category_only_in_the_held_out_rows_is_one_warning_line(tmp_path, capsys):
    from deepgrad.data.bundled import train_test_split

    rng = np.random.default_rng(0)
    m = 200
    x = rng.normal(size=m)
    y = np.where(x > 0, "yes", "no")
    colour = np.where(rng.random(m) < 0.5, "red", "blue").astype(object)
    _, held_out, _, _ = train_test_split(np.arange(m), y, 0.2, 0, stratify=True)
    colour[held_out[3]] = "violet"  # the split train makes with --seed 0
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": x, "colour": colour, "y": y}).to_csv(path, index=False)
    argv = ["train", "--data", str(path), "--target", "y", "--epochs", "1", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "violet" in line]
    assert len(lines) == 1
    assert lines[0].startswith("deepgrad train: warning: held-out rows: column 'colour'")
    assert "1 row(s) hold values not seen in training ('violet')" in lines[0]


def test_predict_with_a_model_trained_before_column_roles_picks_columns_by_name(tmp_path):
    X = np.random.default_rng(0).normal(size=(60, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=np.where(X[:, 0] > 0, "p", "q"))
    df.to_csv(tmp_path / "t.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--epochs", "2",
                 "--quiet", "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    net = dg.load(tmp_path / "o" / "model.npz")
    assert net.preprocessing.columns is not None
    old = dg.Network(net.layer_sizes, output="sigmoid", seed=0)  # a version-2 style record
    old.params = net.params
    old.preprocessing = _old_record(net)
    dg.save(old, tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz", allow_pickle=False) as z:
        assert json.loads(str(z["__meta__"]))["version"] == 2
    df[["c", "y", "b", "a"]].to_csv(tmp_path / "shuffled.csv", index=False)
    pred = tmp_path / "p.csv"
    argv = ["predict", "--model", str(tmp_path / "old.npz"), "--data"]
    assert main([*argv, str(tmp_path / "shuffled.csv"), "--out", str(pred)]) == 0
    expected = net.predict(df.drop(columns="y"))
    rows = list(csv.reader(pred.read_text().splitlines()))
    assert [r[0] for r in rows[1:]] == list(expected)


def _old_record(net):
    from deepgrad.data.preprocessing import Preprocessing

    pre = net.preprocessing
    return Preprocessing("classification", pre.inputs, None, pre.classes, ("a", "b", "c"))


def test_a_regression_target_written_as_na_is_dropped_not_trained(tmp_path, capsys):
    df = _cars()
    df.to_csv(tmp_path / "cars.csv", index=False, na_rep="NA")
    argv = ["train", "--data", str(tmp_path / "cars.csv"), "--target", "Miles_per_Gallon"]
    assert main([*argv, "--epochs", "5", "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "8 of 406 rows without a target 'Miles_per_Gallon' dropped" in text
    assert "task: regression" in text


def test_features_and_drop_choose_the_columns(tmp_path, capsys):
    _write_cars(tmp_path / "cars.csv")
    base = ["train", "--data", str(tmp_path / "cars.csv"), "--target", "Origin", "--epochs", "1"]
    assert main([*base, "--features", "Weight_in_lbs,Year", "--out", str(tmp_path / "a")]) == 0
    assert "2 columns used (1 numeric, 1 date, 0 one-hot) -> 2 inputs" in capsys.readouterr().out
    assert main([*base, "--drop", "Name,Year", "--out", str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "6 columns used (6 numeric, 0 one-hot)" in text and "'Name'" not in text


def test_a_semicolon_separated_csv_is_read_and_said_so(tmp_path, capsys):
    X = np.random.default_rng(1).normal(size=(40, 2))
    df = pd.DataFrame(X, columns=["a", "b"]).assign(y=np.where(X[:, 0] > 0, "p", "q"))
    df.to_csv(tmp_path / "semi.csv", index=False, sep=";")
    argv = ["train", "--data", str(tmp_path / "semi.csv"), "--target", "y", "--epochs", "1"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    assert "read as ;-separated" in capsys.readouterr().out


def _python(code: str, **popen):
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, **popen,
    )  # fmt: skip


def test_without_pandas_a_table_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,p\n2,q\n")
    code = (
        "import sys; sys.modules['pandas'] = None\n"  # import pandas raises ImportError
        "from deepgrad.cli.main import main\n"
        f"sys.exit(main(['train', '--data', {str(tmp_path / 't.csv')!r}, '--target', 'y',"
        f" '--out', {str(tmp_path / 'o')!r}]))"
    )
    p = _python(code)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert err.strip().count("\n") == 0 and "needs pandas" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_ctrl_c_says_what_was_kept_and_how_to_go_on(tmp_path, with_checkpoint):
    """A real SIGINT to a training process: one line on what was written, exit 130."""
    X = np.random.default_rng(0).normal(size=(20000, 20))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    argv = ["train", "--data", str(tmp_path / "d.npz"), "--epochs", "100000", "--out",
            str(tmp_path / "o")]  # fmt: skip
    if with_checkpoint:
        argv += ["--checkpoint", str(tmp_path / "ck.npz")]
    code = f"import sys\nfrom deepgrad.cli.main import main\nsys.exit(main({argv!r}))"
    p = _python(code)
    assert p.stdout.readline().startswith("data: ")  # started; training follows
    for line in p.stdout:
        if line.startswith("training:"):
            break
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "model.npz").exists()
    if with_checkpoint:
        assert "training state is saved in" in err and "run the same command again" in err
        assert (tmp_path / "ck.npz").exists()
    else:
        assert "nothing was written" in err and "--checkpoint PATH" in err


def test_a_divergence_says_nothing_was_written(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(200, 3)) * 1e3
    np.savez(tmp_path / "d.npz", X=X, y=X[:, 0] * 1e3)
    argv = ["train", "--data", str(tmp_path / "d.npz"), "--task", "regression", "--lr", "50",
            "--optimizer", "gd", "--no-standardize", "--quiet",
            "--out", str(tmp_path / "o")]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "nothing was written to" in err and not (tmp_path / "o" / "model.npz").exists()


def test_the_sklearn_estimator_works_inside_a_column_transformer_pipeline():
    pytest.importorskip("sklearn")
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from deepgrad.sklearn import DeepClassifier

    df = _cars().drop(columns="Name")
    y = df.pop("Origin").to_numpy().astype(str)
    numeric = [c for c in df.columns if c != "Year"]
    pipe = make_pipeline(
        make_column_transformer(
            (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (OneHotEncoder(handle_unknown="ignore"), ["Year"]),
            sparse_threshold=0,
        ),
        DeepClassifier(hidden_layer_sizes=(16,), epochs=40, random_state=0),
    )
    pipe.fit(df.iloc[::2], y[::2])
    assert pipe.score(df.iloc[1::2], y[1::2]) > 0.7  # the majority class: 0.62


def test_a_table_whose_encoding_exceeds_the_load_ceiling_is_refused(tmp_path, monkeypatch):
    m = 400
    cells = {f"t{j}": [f"v{i % 150}" for i in range(m)] for j in range(4)}
    pd.DataFrame({**cells, "y": ["a", "b"] * (m // 2)}).to_csv(tmp_path / "w.csv", index=False)
    monkeypatch.setenv("DEEPGRAD_MAX_LOAD_BYTES", str(1_000_000))  # 4 x 150 one-hot: 1.9 MB
    argv = ["train", "--data", str(tmp_path / "w.csv"), "--target", "y", "--quiet", "--out"]
    with pytest.raises(
        ValueError, match=r"encode to 320 rows x \d{3} inputs = 1.\d+ MiB, above the 0.954 MiB"
    ):
        from deepgrad.cli import train

        args = _parse([*argv, str(tmp_path / "o")])
        train.run(args)
    assert not (tmp_path / "o" / "model.npz").exists()


def _parse(argv):
    from deepgrad.cli.main import build_parser

    return build_parser().parse_args(argv)


# -- train's defaults (measured in docs/tables.md) -------------------------------------------
def test_default_epochs_give_about_the_step_budget_within_the_task_bounds():
    from deepgrad.cli.train import MAX_EPOCHS, STEP_BUDGET, default_epochs

    assert default_epochs("classification", 324, "auto") == 500  # 6 steps of 64 per epoch
    assert default_epochs("classification", 96, "auto") == MAX_EPOCHS  # 2 steps: capped
    assert default_epochs("classification", 1_000_000, "auto") == 20  # the least
    assert default_epochs("regression", 1_000_000, "auto") == 50
    assert default_epochs("classification", 300, None) == MAX_EPOCHS  # batch GD: 1 step
    e = default_epochs("classification", 5_000, 100)
    assert e * 50 >= STEP_BUDGET > (e - 1) * 50


def test_train_defaults_to_adam_with_dropout_and_gd_is_a_flag(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(120, 4))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    argv = ["train", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "training: 1000 epochs (2,000 steps), batch size 64, adam, lr 0.001, dropout " \
        "keep-prob 0.8" in text  # fmt: skip
    assert main([*argv, "--optimizer", "gd", "--epochs", "2", "--keep-prob", "1"]) == 0
    assert "training: 2 epochs, batch size 64, gd, lr 0.1 (" in capsys.readouterr().out


def test_a_regression_chooses_its_l2_by_training_rows_set_apart(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 3))
    np.savez(tmp_path / "r.npz", X=X, y=X[:, 0] + 0.1 * rng.normal(size=150))
    argv = ["train", "--data", str(tmp_path / "r.npz"), "--task", "regression", "--epochs", "30"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("L2: ")]
    errors = {
        float(k): float(v)
        for k, v in (p.split(": ") for p in line.split("(")[1].split(")")[0].split(", "))
    }
    assert sorted(errors) == [1.0, 3.0, 10.0, 30.0] and "on 24 of the training rows" in line
    chosen = float(line.split("lambda ")[1].split(",")[0])
    assert errors[chosen] == min(errors.values())
    assert f"L2 lambda {chosen:g} over the dataset" in out
    assert main([*argv, "--l2", "5", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "L2: " not in out and "L2 lambda 5 over the dataset" in out


def test_early_stopping_watches_training_rows_never_the_held_out_ones(tmp_path, capsys):
    X = np.random.default_rng(2).normal(size=(200, 4))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    argv = ["train", "--data", str(tmp_path / "d.npz"), "--epochs", "5", "--early-stopping",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main([*argv, "--test-fraction", "0"]) == 0  # no held-out rows needed
    assert "early stopping on 10% of the training rows" in capsys.readouterr().out
    from deepgrad.cli import train as cli_train

    seen = {}
    real = cli_train._stopping_rows

    def spy(args, Xtr, ytr, src, task):
        Xfit, yfit, (Xval, yval) = real(args, Xtr, ytr, src, task)
        seen.update(train=len(ytr), fit=len(yfit), val=len(yval), rows=Xval)
        return Xfit, yfit, (Xval, yval)

    cli_train._stopping_rows = spy
    try:
        assert main(argv) == 0
    finally:
        cli_train._stopping_rows = real
    assert seen["train"] == 160 and seen["val"] == 16 and seen["fit"] == 144
    held_out = X[[i for i in range(200) if not any(np.array_equal(X[i], r) for r in seen["rows"])]]
    assert len(held_out) == 200 - 16  # the validation rows are training rows, once each


def test_ctrl_c_inside_an_import_is_an_interrupt_not_a_missing_package(monkeypatch, capsys):
    """A SIGINT that lands while matplotlib is being imported (after training, before the
    plot) once read as 'plots need matplotlib', exit 2: it is an interrupt, exit 130."""
    from deepgrad.cli import train as cli_train

    def interrupted_import(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("cannot import name 'pyplot'") from exc

    monkeypatch.setattr(cli_train, "run", interrupted_import)
    assert main(["train", "--data", "iris"]) == 130
    assert capsys.readouterr().err == "deepgrad train: interrupted\n"


def test_the_no_better_than_baseline_advice_follows_what_was_done():
    from deepgrad.cli.common import score_warning
    from deepgrad.diagnostics.metrics import ClassificationScore, RegressionScore

    flat = ClassificationScore(0.5, 0.5, "a", (), 200)
    raw = score_warning(flat, "held-out", standardized=False)
    scaled = score_warning(flat, "held-out", standardized=True)
    assert "drop --no-standardize" in raw and "standardize" not in scaled
    assert "check that the columns carry the target" in scaled
    few = score_warning(flat._replace(m=12), "held-out", standardized=True)
    assert "only 12 rows were scored, so the score is noisy" in few
    assert score_warning(flat._replace(accuracy=0.6), "held-out", standardized=True) is None
    r2 = score_warning(RegressionScore(-0.1, 1.0, 1.0, 1.0, 100), "held-out", standardized=False)
    assert r2.startswith("held-out R2 -0.1000 <= 0") and "drop --no-standardize" in r2
