"""Your own data, end to end: preprocessing records, tables, tasks, warnings, paper cuts."""

import argparse
import json
import warnings

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.cli.common import int_list
from deepgrad.cli.main import main
from deepgrad.data import bundled as datasets
from deepgrad.data.preprocessing import Standardizer, infer_task
from deepgrad.plotting.curves import moving_average

pd = pytest.importorskip("pandas")


# -- the library ---------------------------------------------------------------------------
def _cancer():
    X, y, _ = datasets.load_bundled("breast_cancer")
    return X, np.array(["malignant", "benign"])[y]


def test_standardizer_uses_the_rows_given_and_handles_constant_columns():
    X = np.array([[1.0, 5.0], [3.0, 5.0]])
    s = Standardizer.fit(X)
    np.testing.assert_allclose(s.transform(X), [[-1, 0], [1, 0]])
    np.testing.assert_allclose(s.inverse_transform(s.transform(X)), X)


def test_text_labels_train_predict_and_survive_save_load(tmp_path):
    X, y = _cancer()
    net = dg.Network([30, 16, 1], seed=0)
    net.fit(X, y, standardize=True, epochs=10, seed=0, progress=False)
    assert list(net.preprocessing.classes) == ["benign", "malignant"]
    assert np.mean(net.predict(X) == y) > 0.95
    dg.save(net, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:  # no pickle needed
        assert z["preprocessing.classes"].dtype.kind == "U"
    back = dg.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    np.testing.assert_allclose(back.predict_proba(X), net.predict_proba(X))


def test_numeric_class_names_and_regression_scaling(tmp_path):
    X, y, _ = datasets.load_bundled("wine")
    net = dg.Network([13, 16, 3], output="softmax", seed=0)
    net.fit(X, y + 1, classes=[1, 2, 3], standardize=True, epochs=30, seed=0, progress=False)
    assert set(np.unique(net.predict(X))) <= {1, 2, 3}
    assert np.mean(net.predict(X) == y + 1) > 0.9
    t = X[:, 0] * 100.0  # a regression target in its own units
    reg = dg.Network([13, 16, 1], output="linear", seed=0)
    reg.fit(X, t, standardize=True, epochs=30, learning_rate=0.01, seed=0, progress=False)
    assert reg.preprocessing.targets is not None
    assert abs(np.mean(reg.predict(X)) - np.mean(t)) < 0.2 * np.std(t)
    dg.save(reg, tmp_path / "r.npz")
    np.testing.assert_allclose(dg.load(tmp_path / "r.npz").predict(X), reg.predict(X))


def test_old_model_files_without_a_record_still_load(tmp_path):
    net = dg.Network([3, 4, 1], seed=0)
    dg.save(net, tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz", allow_pickle=False) as z:
        assert json.loads(str(z["__meta__"]))["version"] == 1
    back = dg.load(tmp_path / "old.npz")
    assert back.preprocessing is None


def test_raw_unscaled_training_warns_and_standardize_does_not():
    X, y = _cancer()
    with (
        pytest.warns(dg.DivergenceWarning, match="the cost rose"),  # raw features at lr 0.1
        pytest.warns(dg.UnscaledFeaturesWarning, match="standardize=True"),
    ):
        dg.Network([30, 8, 1], seed=0).fit(X, y, epochs=1, seed=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dg.Network([30, 8, 1], seed=0).fit(X, y, standardize=True, epochs=1, seed=0, progress=False)


def test_task_argument_is_checked_against_the_output():
    X, y = _cancer()
    with pytest.raises(ValueError, match="task='regression' does not fit"):
        dg.Network([30, 8, 1], seed=0).fit(X, y, task="regression", standardize=True)


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (np.array(["a", "b", "a"]), "classification"),
        (np.array([1, 2, 3, 1]), "classification"),
        (np.array([0.5, 1.25, 3.0]), "regression"),
        (np.ones((4, 2)), "regression"),
    ],
)
def test_infer_task_when_unambiguous(y, task):
    assert infer_task(y)[0] == task


def test_infer_task_asks_when_ambiguous():
    with pytest.raises(ValueError, match="pass --task regression or --task classification"):
        infer_task(np.arange(300) % 214, flag="--task")


# -- paper cuts ------------------------------------------------------------------------------
def test_moving_average_survives_a_spike():
    v = np.r_[np.full(10, 2.3), 1e17, np.full(30, 2.3)]
    np.testing.assert_allclose(moving_average(v, 5)[-10:], 2.3)
    r = np.random.default_rng(0).random(500)
    ref = [r[max(0, i - 6) : i + 1].mean() for i in range(500)]
    np.testing.assert_allclose(moving_average(r, 7), ref, rtol=1e-12)


def test_hidden_with_an_empty_entry_is_an_error():
    with pytest.raises(argparse.ArgumentTypeError):
        int_list("128,,64")
    assert int_list("128,64") == [128, 64]


def test_learning_rate_message_does_not_contradict_itself():
    net = dg.Network([3, 2, 1], seed=0)
    with pytest.raises(ValueError) as info:
        net.fit(np.zeros((4, 3)), np.zeros(4), learning_rate=0.0)
    assert "inf]" not in str(info.value) and "> 0" in str(info.value)


def test_epoch_axis_has_integer_ticks():
    from deepgrad.plotting import curves as plotting

    h = dg.History(batch_size=1, seed=0, iteration_cost=[3, 2, 1], epoch_cost=[3, 1])
    fig = plotting.learning_curves(h)
    ticks = fig.axes[1].get_xticks()
    assert np.all(ticks == np.round(ticks))


# -- the command line -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    from sklearn import datasets as sk

    def write(name, bunch, y):
        df = pd.DataFrame(bunch.data, columns=bunch.feature_names)
        df["label"] = y
        order = rng.permutation(len(df))
        k = int(0.8 * len(df))
        df.iloc[order[:k]].to_csv(d / f"{name}_train.csv", index=False)
        df.iloc[order[k:]].to_csv(d / f"{name}_test.csv", index=False)

    b = sk.load_breast_cancer()
    write("cancer", b, np.array(["malignant", "benign"])[b.target])
    b = sk.load_wine()
    write("wine", b, b.target + 1)
    b = sk.load_diabetes(scaled=False)
    write("diabetes", b, b.target.astype(int))
    return d


def test_csv_with_text_labels_train_then_predict(tables, capsys):
    out = tables / "cancer_out"
    argv = ["train", "--data", str(tables / "cancer_train.csv"), "--target", "label"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "task: classification (inferred: y holds text labels" in text
    assert float(text.split("held-out accuracy: ")[1].split()[0]) >= 0.94
    assert "majority-class baseline" in text and "'benign'" in text
    pred = tables / "cancer_pred.csv"
    test = str(tables / "cancer_test.csv")
    assert (
        main(["predict", "--model", str(out / "model.npz"), "--data", test, "--out", str(pred)])
        == 0
    )
    text = capsys.readouterr().out
    assert float(text.split("accuracy: ")[1].split()[0]) >= 0.94
    written = pd.read_csv(pred)["prediction"]
    assert set(written) <= {"benign", "malignant"}
    truth = pd.read_csv(test)["label"]
    assert np.mean(written.to_numpy() == truth.to_numpy()) >= 0.94


def test_wine_labels_1_to_3_give_3_outputs(tables, capsys):
    out = tables / "wine_out"
    argv = ["train", "--data", str(tables / "wine_train.csv"), "--target", "label"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Network([13, 128, 64, 32, 3]" in text
    assert float(text.split("held-out accuracy: ")[1].split()[0]) >= 0.9
    assert list(dg.load(out / "model.npz").preprocessing.classes) == [1, 2, 3]


def test_diabetes_regression_reports_r2_and_never_347_classes(tables, capsys):
    argv = ["train", "--data", str(tables / "diabetes_train.csv"), "--target", "label"]
    out = str(tables / "diab_out")
    assert main([*argv, "--out", out, "--quiet"]) == 2
    assert "--task regression" in capsys.readouterr().err
    assert main([*argv, "--task", "regression", "--out", out]) == 0
    text = capsys.readouterr().out
    assert "held-out R2: " in text and "RMSE" in text and "MAE" in text
    assert float(text.split("held-out R2: ")[1].split(",")[0]) >= 0.35
    test = str(tables / "diabetes_test.csv")
    assert main(["predict", "--model", out + "/model.npz", "--data", test]) == 0
    assert "R2: " in capsys.readouterr().out


def test_cost_blowup_and_baseline_warnings(tmp_path, capsys):
    X, y, _ = datasets.load_bundled("digits", scale="minmax")
    np.savez(tmp_path / "d.npz", X=X, y=y)
    argv = ["train", "--data", str(tmp_path / "d.npz"), "--optimizer", "gd", "--lr", "5",
            "--no-standardize", "--epochs", "20", "--keep-prob", "1"]  # fmt: skip
    assert main([*argv, "--quiet", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "warning: the cost rose from" in err and "lower --lr" in err
    assert "no better than always answering" in err and "drop --no-standardize" in err


def test_unstandardized_cli_training_warns(tmp_path, capsys):
    X, y = _cancer()
    np.savez(tmp_path / "c.npz", X=X, y=y)
    argv = ["train", "--data", str(tmp_path / "c.npz"), "--no-standardize", "--epochs", "2"]
    main([*argv, "--quiet", "--out", str(tmp_path / "o")])
    assert "warning: training on unstandardized features" in capsys.readouterr().err


def test_directory_data_gets_a_held_out_split(tmp_path, capsys):
    from deepgrad.data import arrays as data

    data.make_dataset(tmp_path / "set", 2000, 10, seed=0)
    argv = ["train", "--data", str(tmp_path / "set"), "--epochs", "3", "--hidden", "16"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "held-out split: 400 of 2,000 rows" in text and "memory-mapped" in text
    assert "held-out accuracy: " in text


def test_predict_x_only_npz_and_preview(tmp_path, capsys):
    X, y = _cancer()
    net = dg.Network([30, 8, 1], seed=0)
    net.fit(X, y, standardize=True, epochs=3, seed=0, progress=False)
    dg.save(net, tmp_path / "m.npz")
    np.savez(tmp_path / "x.npz", X=X)
    assert (
        main(["predict", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "x.npz")])
        == 0
    )
    text = capsys.readouterr().out
    assert "predictions: " in text and "of 569" in text and "'" not in text.split(":")[1][:3]


def test_predict_on_bundled_data_says_it_is_not_held_out(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["train", "--data", "iris", "--epochs", "3", "--quiet", "--out", out]) == 0
    assert main(["predict", "--model", out + "/model.npz", "--data", "iris"]) == 0
    assert "not a held-out score" in capsys.readouterr().out


def test_rerunning_a_finished_checkpointed_command_says_so(tmp_path, capsys):
    argv = ["train", "--data", "iris", "--epochs", "2", "--out", str(tmp_path)]
    argv += ["--checkpoint", str(tmp_path / "c.ckpt")]
    assert main(argv) == 0
    assert "resuming" not in capsys.readouterr().out
    assert main(argv) == 0
    assert "nothing left to train" in capsys.readouterr().out
    assert main([*argv[:4], "3", *argv[5:]]) == 0
    assert "resuming from checkpoint" in capsys.readouterr().out


def test_default_batch_size_fits_a_tiny_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    np.savez(tmp_path / "t.npz", X=X, y=(X[:, 0] > 0).astype(int))
    argv = ["train", "--data", str(tmp_path / "t.npz"), "--epochs", "2", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0


def test_tsv_table_and_x_only_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    df = pd.DataFrame(X, columns=["u", "v"])
    df["kind"] = np.where(X[:, 0] > 0, "up", "down")
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    df[["u", "v"]].to_csv(tmp_path / "new.csv", index=False)
    out = str(tmp_path / "o")
    assert main(["train", "--data", str(tmp_path / "t.tsv"), "--target", "kind", "--out", out]) == 0
    capsys.readouterr()
    assert (
        main(["predict", "--model", out + "/model.npz", "--data", str(tmp_path / "new.csv")]) == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("predictions: ") and ("up" in text or "down" in text)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("preprocessing.classes", np.array(["a", "b", "c"]), "classes must be 2 labels"),
        ("preprocessing.classes", np.array(["b", "a"]), "distinct and sorted"),
        ("preprocessing.inputs.scale", -np.ones(30), "scale must be > 0"),
        ("preprocessing.inputs.mean", np.full(30, np.nan), "finite floats"),
        ("preprocessing.extra", np.ones(2), "unknown arrays"),
    ],
)
def test_a_tampered_preprocessing_record_is_refused(tmp_path, key, value, match):
    X, y = _cancer()
    net = dg.Network([30, 4, 1], seed=0)
    net.fit(X, y, standardize=True, epochs=1, seed=0, progress=False)
    dg.save(net, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = value
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        dg.load(tmp_path / "bad.npz")


def test_numeric_class_names_without_classes_get_a_hint():
    X, y, _ = datasets.load_bundled("wine")
    net = dg.Network([13, 4, 3], output="softmax", seed=0)
    with pytest.raises(ValueError, match=r"pass classes=\[1, 2, 3\]"):
        net.fit(X, y + 1, standardize=True, epochs=1)


def _iris_frame():
    from sklearn import datasets as sk

    b = sk.load_iris()
    df = pd.DataFrame(b.data, columns=b.feature_names)
    df["species"] = np.array(b.target_names)[b.target]
    return df


def test_missing_targets_are_dropped_with_a_count_never_a_class(tmp_path, capsys):
    from deepgrad.data.tables import read_table

    df = _iris_frame()
    rows = [3, 40, 77, 120, 149]
    df.loc[rows, "species"] = ["NA", "", "NaN", "null", " n/a"]
    path = tmp_path / "iris_na.csv"
    df.to_csv(path, index=False)  # pandas writes "" for the empty cell: read back as NA
    t = read_table(path, target="species")
    assert len(t.y) == 145 and set(t.y) == {"setosa", "versicolor", "virginica"}
    assert t.notes == ("5 of 150 rows without a target 'species' dropped",)
    kept = np.delete(df.drop(columns="species").to_numpy(), rows, axis=0)
    np.testing.assert_array_equal(t.frame.astype(float).to_numpy(), kept)
    out = tmp_path / "run"
    argv = ["train", "--data", str(path), "--target", "species", "--epochs", "5", "--out"]
    assert main([*argv, str(out)]) == 0
    text = capsys.readouterr().out
    data_line = next(line for line in text.splitlines() if line.startswith("data: "))
    assert "145 rows" in data_line and "5 of 150 rows without a target" in data_line
    assert "'NA'" not in text and "'null'" not in text


def test_a_bad_cell_after_dropped_targets_names_its_real_line(tmp_path):
    from deepgrad.data.tables import read_table

    df = _iris_frame().astype({"sepal width (cm)": object})
    df.loc[1, "species"] = "NA"
    df.loc[10, "sepal width (cm)"] = "wide"
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    t = read_table(path, target="species")
    enc = dg.TableEncoder.fit(t.frame, lines=True, source="bad.csv")  # one stray: missing
    assert enc.notes == (
        "column 'sepal width (cm)': 1 cell(s) 'wide' in a column of numbers read as missing",
    )
    with pytest.raises(ValueError, match=r"1 missing cell\(s\), the first at line 12"):
        dg.TableEncoder.fit(t.frame, missing="error", lines=True, source="bad.csv")


def test_an_all_missing_target_is_an_error_naming_the_column(tmp_path):
    from deepgrad.data.tables import read_table

    df = _iris_frame()
    df["species"] = "NA"
    path = tmp_path / "none.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"'species' .* missing in all 150 rows"):
        read_table(path, target="species")


@pytest.mark.parametrize("labels", ["from 0", "from 1", "a shuffled split"])
def test_the_index_column_pandas_or_r_wrote_is_dropped(tmp_path, labels):
    from deepgrad.data.tables import read_table

    df = _iris_frame().sort_values("species")  # sorted: the index would leak the answer
    start = 1 if labels == "from 1" else 0
    df.index = np.arange(start, start + len(df))
    if labels == "a shuffled split":  # train_test_split's part keeps the frame's labels
        df = pd.concat([df, df]).reset_index(drop=True)
        df = df.iloc[np.random.default_rng(0).permutation(len(df))[:150]]
    path = tmp_path / "indexed.csv"
    df.to_csv(path)  # the default: an unnamed first column of row numbers
    t = read_table(path, target="species")
    assert "Unnamed: 0" not in t.feature_names and t.frame.shape == (150, 4)
    assert t.notes == ("the unnamed first column (row labels, an index) dropped",)


def test_an_unnamed_column_that_is_not_row_numbers_is_kept(tmp_path):
    from deepgrad.data.tables import read_table

    df = _iris_frame()
    df.insert(0, "", np.linspace(0.5, 3.0, len(df)))
    path = tmp_path / "unnamed.csv"
    df.to_csv(path, index=False)
    t = read_table(path, target="species")
    assert t.feature_names[0] == "Unnamed: 0" and t.notes == ()


def test_predict_keeps_every_row_when_some_targets_are_missing(tmp_path, capsys):
    df = _iris_frame()
    df.to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "train.csv"), "--target", "species"]
    assert main([*argv, "--epochs", "5", "--quiet", "--out", str(out)]) == 0
    df.loc[[0, 60], "species"] = "NA"
    df.to_csv(tmp_path / "new.csv", index=False)
    pred = tmp_path / "pred.csv"
    model = str(out / "model.npz")
    argv = ["predict", "--model", model, "--data", str(tmp_path / "new.csv"), "--out", str(pred)]
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "target 'species' has 2 missing cell(s): not scored" in text
    assert "accuracy" not in text
    assert len(pd.read_csv(pred)) == 150  # one prediction per row of the file
