"""Example spotdiff task package: MLP regression on scikit-learn's diabetes data."""
