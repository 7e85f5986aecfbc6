"""radmi.losses"""
