"""coi: chain-of-identity tracker for autologous cell therapy."""
