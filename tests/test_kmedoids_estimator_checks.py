"""scikit-learn's estimator checks for KMedoids (none skipped)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from rankcore import KMedoids


@parametrize_with_checks([KMedoids(n_clusters=3, random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
