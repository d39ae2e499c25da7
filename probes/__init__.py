"""One probe module per gap; each is a pytest module marked ``gaps``."""
