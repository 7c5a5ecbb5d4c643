-- Runs once, when the postgres volume is created: the warehouse and Airflow's metadata database.
CREATE DATABASE weather_dw;
CREATE DATABASE airflow;
