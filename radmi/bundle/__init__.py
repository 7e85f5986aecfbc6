"""radmi.bundle"""
