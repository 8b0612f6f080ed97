"""Grid services (Nordic FCR-N, FCR-D up/down, FFR) and their energy management, as pure parts.

`programs/grid_services.py` is the program that owns the tags; the modules here hold the
figures of the reference (`products`), the frequency input (`frequency`), LER energy
management (`ler`), FFR (`ffr`), headroom and endurance (`reserve`) and the mapping of the
original controller's droop settings (`legacy`). None of them does IO.
"""
